"""Optional authentication of event senders (off by default: KANAL_INGRESS_AUTH=none).

A sender presents `Authorization: Bearer <token>` (or the `access_token` query parameter, as the
CloudEvents webhook spec allows). A missing or invalid token is 401 with `WWW-Authenticate:
Bearer`; a valid token that may not post to this Broker or Channel is 403.

- `tokens`: static tokens from a YAML or JSON file (KANAL_INGRESS_AUTH_TOKENS_FILE):

      tokens:
        - token: s3cr3t
          allow: ["broker/event-example/default", "channel/shop/*", "*"]

  `allow` entries are `<kind>/<namespace>/<name>`, where the name (or namespace and name) may
  be `*`, or `*` alone for everything. Tokens are compared in constant time.
- `jwt`: JSON Web Tokens signed by keys from a JWKS (KANAL_INGRESS_JWT_JWKS_URL: a file path,
  file:// or http(s) URL, read at startup), with issuer KANAL_INGRESS_JWT_ISSUER; the audience
  must contain `<kind>/<namespace>/<name>` of the destination, e.g. `broker/event-example/default`.

Checks are synchronous and do no I/O per request.
"""

from __future__ import annotations

import hmac
import json
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


@dataclass(frozen=True, slots=True)
class Denied:
    status: int  # 401 or 403
    message: str


class Authenticator(Protocol):
    def check(
        self, headers: Sequence[tuple[bytes, bytes]], query_string: bytes, route: Route
    ) -> Denied | None: ...


def bearer_token(headers: Sequence[tuple[bytes, bytes]], query_string: bytes) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    if query_string and b"access_token=" in query_string:
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
    def __init__(self, grants: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        self._grants = [(token.encode(), allow) for token, allow in grants]

    @classmethod
    def from_file(cls, path: str) -> StaticTokens:
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
        return cls(grants)

    def check(
        self, headers: Sequence[tuple[bytes, bytes]], query_string: bytes, route: Route
    ) -> Denied | None:
        token = bearer_token(headers, query_string)
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
    def __init__(self, issuer: str, jwks: dict[str, Any]) -> None:
        self._issuer = issuer
        self._keys: dict[str | None, Any] = {}
        for jwk in jwks.get("keys", []):
            key = jwt.PyJWK(jwk)
            self._keys[jwk.get("kid")] = key
        if not self._keys:
            raise ValidationError.single("KANAL_INGRESS_JWT_JWKS_URL", "the JWKS holds no keys")

    @classmethod
    def from_jwks_source(cls, issuer: str, source: str) -> JwtVerifier:
        try:
            if source.startswith(("http://", "https://")):
                with urlopen(source, timeout=10) as response:
                    text = response.read().decode()
            else:
                text = Path(source.removeprefix("file://")).read_text()
            return cls(issuer, json.loads(text))
        except (OSError, ValueError, jwt.PyJWKError) as exc:
            raise ValidationError.single(
                "KANAL_INGRESS_JWT_JWKS_URL", f"cannot load a JWKS from {source}: {exc}"
            ) from None

    def check(
        self, headers: Sequence[tuple[bytes, bytes]], query_string: bytes, route: Route
    ) -> Denied | None:
        token = bearer_token(headers, query_string)
        if token is None:
            return _MISSING
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self._keys.get(kid) or (next(iter(self._keys.values())) if len(self._keys) == 1 else None)
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


def authenticator_from_settings(settings: Settings) -> Authenticator | None:
    """The authenticator KANAL_INGRESS_AUTH names; None for `none` (every sender allowed)."""
    if settings.ingress_auth == "tokens":
        if not settings.ingress_auth_tokens_file:
            raise ValidationError.single(
                "KANAL_INGRESS_AUTH_TOKENS_FILE", "is required with KANAL_INGRESS_AUTH=tokens"
            )
        return StaticTokens.from_file(settings.ingress_auth_tokens_file)
    if settings.ingress_auth == "jwt":
        if not settings.ingress_jwt_issuer or not settings.ingress_jwt_jwks_url:
            raise ValidationError.single(
                "KANAL_INGRESS_JWT_ISSUER",
                "KANAL_INGRESS_JWT_ISSUER and KANAL_INGRESS_JWT_JWKS_URL are required",
            )
        return JwtVerifier.from_jwks_source(settings.ingress_jwt_issuer, settings.ingress_jwt_jwks_url)
    return None
