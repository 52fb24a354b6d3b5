"""Where the admin API's tokens live: the controller's token file (read again when it changes),
the per-user file `kanal dev` writes, what a controller does with no token configured, and which
token the CLI sends."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from channel.control.token_files import (
    MAX_FILE_BYTES,
    TokenFile,
    client_token,
    controller_tokens,
    local_token_path,
    remove_local_token,
    url_token_path,
    write_local_token,
)
from channel.control.tokens import INVALID
from channel.errors import ValidationError
from channel.settings import Settings

OLD = "old-token-" + "o" * 20
NEW = "new-token-" + "n" * 20
FIXED = "env-token-" + "e" * 20


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def _start(settings: Settings, environ: dict[str, str]) -> None:
    """A controller's start and stop, as far as its tokens go."""
    with controller_tokens(settings, environ):
        pass


# -- the controller's token file --------------------------------------------------------------


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(OLD + "\n")
    tokens = TokenFile(path, fixed=[FIXED])
    assert tokens.refusal(_bearer(OLD)) is None
    assert tokens.refusal(_bearer(FIXED)) is None
    # As Kubernetes updates a mounted Secret: a new file swapped in under the same name.
    (tmp_path / "token.next").write_text(f"{NEW}\n")
    os.replace(tmp_path / "token.next", path)
    assert tokens.refusal(_bearer(OLD)) == INVALID
    assert tokens.refusal(_bearer(NEW)) is None
    assert tokens.refusal(_bearer(FIXED)) is None


def test_a_token_file_turned_bad_keeps_the_tokens_read_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text(OLD)
    tokens = TokenFile(path)
    path.write_text("short\n")
    with caplog.at_level(logging.ERROR, "channel.control.token_files"):
        assert tokens.refusal(_bearer(OLD)) is None
        assert tokens.refusal(_bearer("short")) == INVALID
    assert [r.getMessage() for r in caplog.records] == [
        "admin API tokens unchanged, since the token file is not usable: "
        f"{path} line 1: a token needs at least 16 characters, this one has 5"
    ]
    path.unlink()
    assert tokens.refusal(_bearer(OLD)) is None
    path.write_text(NEW)
    assert tokens.refusal(_bearer(NEW)) is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, "cannot read {path}: No such file or directory", id="missing"),
        pytest.param(
            b"x" * (MAX_FILE_BYTES + 1), f"{{path}} is larger than {MAX_FILE_BYTES} bytes", id="large"
        ),
        pytest.param("tökén-".encode() + b"x" * 20, "{path} is not ASCII text", id="not ASCII"),
    ],
)
def test_an_unusable_token_file_stops_the_controller_at_start(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValidationError) as caught:
        TokenFile(path)
    assert str(caught.value) == "KANAL_CONTROLLER_TOKEN_FILE: " + problem.format(path=path)


# -- the per-user file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "environ", "expected"),
    [
        (
            "127.0.0.1",
            8081,
            {"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/home/u"},
            "/x/cfg/kanal/tokens/localhost-8081",
        ),
        ("::1", 9000, {"HOME": "/home/u"}, "/home/u/.config/kanal/tokens/localhost-9000"),
        (
            "localhost",
            8081,
            {"XDG_CONFIG_HOME": "relative", "HOME": "/home/u"},
            "/home/u/.config/kanal/tokens/localhost-8081",
        ),
        ("kanal.example", 443, {"HOME": "/home/u"}, "/home/u/.config/kanal/tokens/kanal.example-443"),
        ("fe80::1", 8081, {"HOME": "/home/u"}, "/home/u/.config/kanal/tokens/fe80__1-8081"),
    ],
)
def test_the_per_user_token_file_is_named_by_the_controller_address(
    host: str, port: int, environ: dict[str, str], expected: str
) -> None:
    assert local_token_path(host, port, environ) == Path(expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8081", "localhost-8081"),
        ("http://localhost:8081/", "localhost-8081"),
        ("http://[::1]:8081", "localhost-8081"),
        ("https://kanal.example", "kanal.example-443"),
        ("http://kanal.example", "kanal.example-80"),
        ("http://kanal.example:99999", None),
    ],
)
def test_the_cli_finds_the_file_from_the_url_it_calls(url: str, expected: str | None) -> None:
    path = url_token_path(url, {"HOME": "/home/u"})
    assert (path.name if path else None) == expected


def test_the_per_user_file_is_for_this_user_only_and_removed_only_while_it_is_ours(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "kanal" / "tokens" / "localhost-8081"
    write_local_token(path, OLD)
    assert path.read_text() == OLD + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    write_local_token(path, NEW)  # a later `kanal dev` on the same port
    assert path.read_text() == NEW + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["localhost-8081"]
    remove_local_token(path, OLD)  # the first one stopping leaves the new one's file
    assert path.exists()
    remove_local_token(path, NEW)
    assert not path.exists()
    remove_local_token(path, NEW)  # already gone: nothing to do


# -- what the controller accepts ----------------------------------------------------------------


def test_a_controller_with_no_token_on_loopback_makes_one_for_this_run(tmp_path: Path) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    settings = _settings(host="127.0.0.1", controller_port=18081)
    path = tmp_path / "kanal" / "tokens" / "localhost-18081"
    with controller_tokens(settings, environ) as tokens:
        token = path.read_text().strip()
        assert len(token) >= 40
        assert tokens.refusal(_bearer(token)) is None
        assert tokens.refusal(_bearer(OLD)) == INVALID
        assert client_token(settings, environ) == token  # the CLI on this machine finds it
    assert not path.exists()


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"host": "0.0.0.0"}, id="every interface"),
        pytest.param({"host": "127.0.0.1", "controller_host": ""}, id="controller on every interface"),
        pytest.param({"host": "kanal-controller"}, id="a name"),
    ],
)
def test_a_controller_with_no_token_elsewhere_does_not_start(tmp_path: Path, values: dict[str, str]) -> None:
    with pytest.raises(
        ValueError, match="would be open to anyone who reaches it: set KANAL_CONTROLLER_TOKEN_FILE"
    ):
        _start(_settings(**values), {"XDG_CONFIG_HOME": str(tmp_path)})
    assert not (tmp_path / "kanal").exists()


def test_a_configured_token_is_used_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(OLD)
    environ = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    settings = _settings(host="0.0.0.0", controller_token_file=str(path), controller_token=FIXED)
    with controller_tokens(settings, environ) as tokens:
        assert tokens.refusal(_bearer(OLD)) is None
        assert tokens.refusal(_bearer(FIXED)) is None
    with controller_tokens(_settings(host="0.0.0.0", controller_token=FIXED), environ) as tokens:
        assert tokens.refusal(_bearer(FIXED)) is None
        assert tokens.refusal(_bearer(OLD)) == INVALID
    assert not (tmp_path / "cfg").exists()  # nothing written


def test_a_short_token_in_the_environment_stops_the_controller() -> None:
    with pytest.raises(ValueError, match="KANAL_CONTROLLER_TOKEN: a token needs at least 16 characters"):
        _start(_settings(controller_token="secret"), {})


def test_a_controller_that_cannot_write_its_token_says_where(tmp_path: Path) -> None:
    (tmp_path / "kanal").write_text("a file where the directory should be")
    with pytest.raises(
        ValueError, match=r"cannot write the admin API's token to .*; set KANAL_CONTROLLER_TOKEN_FILE"
    ):
        _start(_settings(), {"XDG_CONFIG_HOME": str(tmp_path)})


# -- what the CLI sends -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"controller_token": FIXED, "controller_token_file": "FILE"}, FIXED, id="environment first"
        ),
        pytest.param({"controller_token_file": "FILE"}, OLD, id="then the first of the token file"),
        pytest.param({}, NEW, id="then the per-user file"),
        pytest.param({"controller_port": 1}, None, id="else none"),
        pytest.param({"controller_url": "http://kanal.example:8081"}, None, id="no file for another host"),
    ],
)
def test_which_token_the_cli_sends(tmp_path: Path, values: dict[str, object], expected: str | None) -> None:
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    token_file = tmp_path / "token"
    token_file.write_text(f"# the controller's\n{OLD}\n{FIXED}\n")
    write_local_token(local_token_path("127.0.0.1", 8081, environ), NEW)
    if values.get("controller_token_file") == "FILE":
        values = {**values, "controller_token_file": str(token_file)}
    assert client_token(_settings(**values), environ) == expected
