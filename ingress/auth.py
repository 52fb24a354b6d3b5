"""Optional authentication of event senders (off by default: KANAL_INGRESS_AUTH=none).

A sender presents `Authorization: Bearer <token>` (or, only with
KANAL_INGRESS_AUTH_QUERY_TOKEN=true, the `access_token` query parameter, which the CloudEvents
webhook spec allows but which puts the token in every access log on its way). A missing or
invalid token is 401 with `WWW-Authenticate: Bearer`; a valid token that may not post to this
Broker or Channel is 403.

- `tokens`: static tokens from a YAML or JSON file (KANAL_INGRESS_AUTH_TOKENS_FILE):

      tokens:
        - token: s3cr3t
          allow: ["broker/event-example/default", "channel/shop/*", "*"]

  `allow` entries are `<kind>/<namespace>/<name>`, where the name (or namespace and name) may
  be `*`, or `*` alone for everything. Tokens are compared in constant time.
- `jwt`: JSON Web Tokens signed by keys from a JWKS (KANAL_INGRESS_JWT_JWKS_URL: a file path,
  file:// or https:// URL; http:// only to a loopback address; redirects are not followed),
  with issuer KANAL_INGRESS_JWT_ISSUER; the audience must contain `<kind>/<namespace>/<name>` of
  the destination, e.g. `broker/event-example/default`. The JWKS is read at start and again every
  KANAL_INGRESS_JWT_JWKS_REFRESH_SECONDS, and sooner (at most every 30 s) when a token names a key
  it does not hold, so a rotated key needs no restart; until the new keys are in, such a token is
  401. A token names its key (`kid`); only a token without `kid` is checked against the JWKS's
  key when it holds exactly one.

Checks are synchronous and do no I/O per request: a JWKS is read in a thread of its own.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
import yaml

from channel.errors import ValidationError
from channel.proxy import urlopen
from channel.settings import Settings
from ingress.routing import Route

__all__ = [
    "Authenticator",
    "Denied",
    "JwtVerifier",
    "StaticTokens",
    "authenticator_from_settings",
]


log = logging.getLogger(__name__)

# A JWKS is read again at most this often when tokens name keys it does not hold.
_UNKNOWN_KID_REFRESH = 30.0


@dataclass(frozen=True, slots=True)
class Denied:
    status: int  # 401 or 403
    message: str


class Authenticator(Protocol):
    def check(
        self, headers: Sequence[tuple[bytes, bytes]], query_string: bytes, route: Route
    ) -> Denied | None: ...


def bearer_token(
    headers: Sequence[tuple[bytes, bytes]], query_string: bytes, *, from_query: bool = False
) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    if from_query and query_string and b"access_token=" in query_string:
        values = urllib.parse.parse_qs(query_string.decode("latin-1")).get("access_token")
        return values[0] if values else None
    return None


def _destination(route: Route) -> str:
    return f"{route.kind}/{route.namespace}/{route.name}"


def _allowed(patterns: Sequence[str], route: Route) -> bool:
    for pattern in patterns:
        if pattern == "*":
            return True
        kind, _, rest = pattern.partition("/")
        namespace, _, name = rest.partition("/")
        if kind == route.kind and namespace in ("*", route.namespace) and name in ("*", route.name):
            return True
    return False


_MISSING = Denied(401, "a bearer token is required")
_INVALID = Denied(401, "the bearer token is not valid")


class StaticTokens:
    def __init__(self, grants: Sequence[tuple[str, tuple[str, ...]]], *, from_query: bool = False) -> None:
        self._grants = [(token.encode(), allow) for token, allow in grants]
        self._from_query = from_query

    @classmethod
    def from_file(cls, path: str, *, from_query: bool = False) -> StaticTokens:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValidationError.single(
                "KANAL_INGRESS_AUTH_TOKENS_FILE", f"cannot read {path}: {exc}"
            ) from None
        entries = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValidationError.single(
                "KANAL_INGRESS_AUTH_TOKENS_FILE", f"{path}: expected a `tokens` list"
            )
        grants = []
        for i, entry in enumerate(entries):
            token = entry.get("token") if isinstance(entry, dict) else None
            allow = entry.get("allow", []) if isinstance(entry, dict) else None
            if not isinstance(token, str) or not token or not isinstance(allow, list):
                raise ValidationError.single(f"tokens[{i}]", "needs a non-empty `token` and an `allow` list")
            grants.append((token, tuple(str(a) for a in allow)))
        return cls(grants, from_query=from_query)

    def check(
        self, headers: Sequence[tuple[bytes, bytes]], query_string: bytes, route: Route
    ) -> Denied | None:
        token = bearer_token(headers, query_string, from_query=self._from_query)
        if token is None:
            return _MISSING
        presented = token.encode()
        match: tuple[str, ...] | None = None
        for known, allow in self._grants:
            if hmac.compare_digest(presented, known):
                match = allow
        if match is None:
            return _INVALID
        if not _allowed(match, route):
            return Denied(403, f"this token may not post to {_destination(route)}")
        return None


class JwtVerifier:
    def __init__(
        self,
        issuer: str,
        jwks: dict[str, Any],
        *,
        source: str | None = None,
        refresh_seconds: float = 300.0,
        from_query: bool = False,
    ) -> None:
        self._issuer = issuer
        self._keys = _keys(jwks)
        if not self._keys:
            raise ValidationError.single("KANAL_INGRESS_JWT_JWKS_URL", "the JWKS holds no keys")
        self._source = source
        self._refresh_seconds = refresh_seconds
        self._from_query = from_query
        self._loaded_at = time.monotonic()
        self._tried_at = self._loaded_at  # the last read started, successful or not
        self._reading = False

    @classmethod
    def from_jwks_source(
        cls, issuer: str, source: str, *, refresh_seconds: float = 300.0, from_query: bool = False
    ) -> JwtVerifier:
        try:
            jwks = _read_jwks(source)
            return cls(issuer, jwks, source=source, refresh_seconds=refresh_seconds, from_query=from_query)
        except (OSError, ValueError, jwt.PyJWKError) as exc:
            raise ValidationError.single(
                "KANAL_INGRESS_JWT_JWKS_URL", f"cannot load a JWKS from {source}: {exc}"
            ) from None

    def check(
        self, headers: Sequence[tuple[bytes, bytes]], query_string: bytes, route: Route
    ) -> Denied | None:
        token = bearer_token(headers, query_string, from_query=self._from_query)
        if token is None:
            return _MISSING
        now = time.monotonic()
        if now - self._loaded_at >= self._refresh_seconds:
            self._read_again(now)
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            keys = self._keys
            if kid is None:
                key = next(iter(keys.values())) if len(keys) == 1 else None
            else:
                key = keys.get(kid)
                if key is None and now - self._tried_at >= _UNKNOWN_KID_REFRESH:
                    self._read_again(now)  # a key rotated in, perhaps: this token is still 401
            if key is None:
                return _INVALID
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"], "verify_aud": False},
                leeway=30,
            )
        except jwt.PyJWTError:
            return _INVALID
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if _destination(route) not in audiences:
            return Denied(403, f"the token's audience does not include {_destination(route)}")
        return None

    def _read_again(self, now: float) -> None:
        """Read the JWKS in a thread; its keys replace these when it is read and valid."""
        if self._source is None or self._reading:
            return
        self._reading = True
        self._tried_at = now
        threading.Thread(target=self._reload, args=(self._source,), name="jwks", daemon=True).start()

    def _reload(self, source: str) -> None:
        try:
            keys = _keys(_read_jwks(source))
            if not keys:
                raise ValueError("the JWKS holds no keys")
        except (OSError, ValueError, jwt.PyJWKError) as exc:
            log.warning("cannot read the JWKS from %s again (keeping its keys as they were): %s", source, exc)
        else:
            self._keys = keys  # one assignment: a check sees the old keys or the new ones
            self._loaded_at = time.monotonic()
        finally:
            self._reading = False


def _keys(jwks: dict[str, Any]) -> dict[str | None, Any]:
    return {jwk.get("kid"): jwt.PyJWK(jwk) for jwk in jwks.get("keys", [])}


def _read_jwks(source: str) -> dict[str, Any]:
    """A JWKS from an https:// URL (http:// to a loopback address only), without following
    redirects, or from a file."""
    if source.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(source)
        if parts.scheme == "http" and not _loopback(parts.hostname or ""):
            raise ValueError("a JWKS is fetched over https:// (http:// only from a loopback address)")
        with urlopen(source, timeout=10, follow_redirects=False) as response:
            text = response.read(_MAX_JWKS_BYTES + 1)
        if len(text) > _MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS is larger than {_MAX_JWKS_BYTES} bytes")
        document = json.loads(text)
    else:
        document = json.loads(Path(source.removeprefix("file://")).read_text())
    if not isinstance(document, dict):
        raise ValueError("a JWKS is a JSON object with `keys`")
    return document


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_MAX_JWKS_BYTES = 1024 * 1024


def authenticator_from_settings(settings: Settings) -> Authenticator | None:
    """The authenticator KANAL_INGRESS_AUTH names; None for `none` (every sender allowed)."""
    if settings.ingress_auth == "tokens":
        if not settings.ingress_auth_tokens_file:
            raise ValidationError.single(
                "KANAL_INGRESS_AUTH_TOKENS_FILE", "is required with KANAL_INGRESS_AUTH=tokens"
            )
        return StaticTokens.from_file(
            settings.ingress_auth_tokens_file, from_query=settings.ingress_auth_query_token
        )
    if settings.ingress_auth == "jwt":
        if not settings.ingress_jwt_issuer or not settings.ingress_jwt_jwks_url:
            raise ValidationError.single(
                "KANAL_INGRESS_JWT_ISSUER",
                "KANAL_INGRESS_JWT_ISSUER and KANAL_INGRESS_JWT_JWKS_URL are required",
            )
        return JwtVerifier.from_jwks_source(
            settings.ingress_jwt_issuer,
            settings.ingress_jwt_jwks_url,
            refresh_seconds=settings.ingress_jwt_jwks_refresh_seconds,
            from_query=settings.ingress_auth_query_token,
        )
    return None
