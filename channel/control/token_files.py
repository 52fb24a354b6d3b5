"""Where the admin API's tokens live on disk, for the controller and for the CLI.

- A token file (KANAL_CONTROLLER_TOKEN_FILE, one token a line): read at start, at most
  `MAX_FILE_BYTES`, and read again when it changes, so a token is rotated without a restart (a
  Kubernetes Secret mounted as a volume is updated in place). A file that turns unreadable or
  invalid leaves the tokens read before, with an error logged.
- The per-user file of a controller on this machine: `kanal dev`, and a `kanal controller` bound
  to loopback with no token configured, make a random token and write it to
  ``$XDG_CONFIG_HOME/kanal/tokens/<host>-<port>`` (``~/.config`` when XDG_CONFIG_HOME is unset;
  every loopback address is ``localhost``), mode 0600 in a 0700 directory, and remove it when
  they stop. The CLI on the same machine finds it from the URL it calls, as kubectl finds its
  kubeconfig, so the getting-started flow needs no setup.
- The token the CLI sends: KANAL_CONTROLLER_TOKEN, else the first token of
  KANAL_CONTROLLER_TOKEN_FILE, else the per-user file for the controller it calls, else none.

A controller with no token configured that is not bound to loopback does not start: its admin
API would be open to whoever reaches the port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from channel.control.tokens import (
    AdminTokens,
    Refusal,
    TokenCheck,
    is_loopback,
    parse_tokens,
    token_problem,
)
from channel.errors import ValidationError
from channel.settings import Settings

__all__ = [
    "MAX_FILE_BYTES",
    "TokenFile",
    "client_token",
    "controller_tokens",
    "local_token_path",
    "new_token",
    "remove_local_token",
    "url_token_path",
    "write_local_token",
]

log = logging.getLogger(__name__)

MAX_FILE_BYTES: Final = 64 * 1024
FILE_SETTING: Final = "KANAL_CONTROLLER_TOKEN_FILE"


def new_token() -> str:
    """A random token: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def read_token_file(path: str | Path) -> list[str]:
    """The tokens of a token file; ValidationError naming the file and every problem."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValidationError.single(FILE_SETTING, f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValidationError.single(FILE_SETTING, f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValidationError.single(FILE_SETTING, f"{path} is not ASCII text") from None
    return parse_tokens(text, str(path))


class TokenFile:
    """The tokens of a token file, plus fixed ones; the file is read again when it changes."""

    def __init__(self, path: str | Path, fixed: Sequence[str] = ()) -> None:
        self._path = Path(path)
        self._fixed = tuple(fixed)
        self._stamp = self._stat()
        self._tokens = AdminTokens.of([*read_token_file(self._path), *self._fixed])

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)  # follows a Secret volume's symlinks to the current file
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refusal(self, authorization: str | None) -> Refusal | None:
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._tokens = AdminTokens.of([*read_token_file(self._path), *self._fixed])
                log.info("admin API tokens read again from %s", self._path)
            except ValidationError as exc:
                log.error("admin API tokens unchanged, since the token file is not usable: %s", exc)
        return self._tokens.refusal(authorization)


def _config_dir(environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "kanal"
    home = environ.get("HOME")
    return (Path(home) if home else Path.home()) / ".config" / "kanal"


def local_token_path(host: str, port: int, environ: Mapping[str, str]) -> Path:
    """The per-user token file of the controller at `host`:`port`."""
    name = "localhost" if is_loopback(host) else re.sub(r"[^A-Za-z0-9._-]", "_", host)
    return _config_dir(environ) / "tokens" / f"{name}-{port}"


def url_token_path(controller_url: str, environ: Mapping[str, str]) -> Path | None:
    """The per-user token file of the controller at `controller_url`; None for a bad URL."""
    parts = urllib.parse.urlsplit(controller_url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return local_token_path(parts.hostname or "localhost", port, environ)


def write_local_token(path: Path, token: str) -> None:
    """Write `token` to `path`, readable by this user only, replacing what was there."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.replace(temporary, path)


def remove_local_token(path: Path, token: str) -> None:
    """Remove `path` if it still holds `token` (a later `kanal dev` may have replaced it)."""
    with contextlib.suppress(OSError, ValidationError):
        if read_token_file(path)[0] == token:
            path.unlink()


def _configured(settings: Settings) -> TokenCheck | None:
    fixed = []
    if settings.controller_token is not None:
        token = settings.controller_token.get_secret_value()
        if (problem := token_problem(token)) is not None:
            raise ValidationError.single("KANAL_CONTROLLER_TOKEN", problem)
        fixed.append(token)
    if settings.controller_token_file:
        return TokenFile(settings.controller_token_file, fixed)
    return AdminTokens.of(fixed) if fixed else None


@contextlib.contextmanager
def controller_tokens(settings: Settings, environ: Mapping[str, str]) -> Iterator[TokenCheck]:
    """The tokens the controller accepts, for as long as it runs. With none configured, on
    loopback: a new token in the per-user file (removed on exit); elsewhere a ValueError that
    says what to set."""
    configured = _configured(settings)
    if configured is not None:
        yield configured
        return
    host = settings.controller_bind_host()
    if not is_loopback(host):
        raise ValueError(
            f"the admin API on {host or '*'}:{settings.controller_port} would be open to anyone who "
            f"reaches it: set {FILE_SETTING} (a file of bearer tokens) or KANAL_CONTROLLER_TOKEN, "
            "or bind it to loopback (KANAL_CONTROLLER_HOST=127.0.0.1)"
        )
    token = new_token()
    path = local_token_path(host, settings.controller_port, environ)
    try:
        write_local_token(path, token)
    except OSError as exc:
        raise ValueError(f"cannot write the admin API's token to {path}: {exc}; set {FILE_SETTING}") from None
    log.info("admin API token made for this run in %s (no %s set)", path, FILE_SETTING)
    try:
        yield AdminTokens.of([token])
    finally:
        remove_local_token(path, token)


def client_token(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The token the CLI sends, or None when none is configured or found."""
    if settings.controller_token is not None:
        return settings.controller_token.get_secret_value()
    if settings.controller_token_file:
        return read_token_file(settings.controller_token_file)[0]
    path = url_token_path(settings.public_controller_url(), environ)
    return read_token_file(path)[0] if path is not None and path.is_file() else None
