"""Ingress authentication: static tokens and JWTs, 401 for missing/invalid, 403 for not allowed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from channel.errors import ValidationError
from ingress.auth import JwtVerifier, StaticTokens
from ingress.routing import Route

ROUTE = Route("broker", "event-example", "default", "topic")
OTHER = Route("broker", "other", "default", "topic")
CHANNEL = Route("channel", "shop", "orders", "topic")


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


@pytest.fixture
def tokens(tmp_path: Path) -> StaticTokens:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n"
        "  - {token: one, allow: [broker/event-example/default]}\n"
        "  - {token: shop, allow: ['channel/shop/*']}\n"
        "  - {token: root, allow: ['*']}\n"
    )
    return StaticTokens.from_file(str(path))


@pytest.mark.parametrize(
    ("headers", "query", "route", "status"),
    [
        pytest.param(bearer("one"), b"", ROUTE, None, id="allowed"),
        pytest.param(bearer("one"), b"", OTHER, 403, id="other-broker"),
        pytest.param(bearer("shop"), b"", CHANNEL, None, id="wildcard-name"),
        pytest.param(bearer("shop"), b"", ROUTE, 403, id="wildcard-wrong-kind"),
        pytest.param(bearer("root"), b"", OTHER, None, id="star"),
        pytest.param(bearer("nope"), b"", ROUTE, 401, id="unknown-token"),
        pytest.param([], b"", ROUTE, 401, id="missing"),
        pytest.param([(b"authorization", b"Basic b25lOg==")], b"", ROUTE, 401, id="wrong-scheme"),
        pytest.param([], b"access_token=one", ROUTE, None, id="query-parameter"),
    ],
)
def test_static_tokens(
    tokens: StaticTokens, headers: list[tuple[bytes, bytes]], query: bytes, route: Route, status: int | None
) -> None:
    denied = tokens.check(headers, query, route)
    assert (denied.status if denied else None) == status


def test_bad_tokens_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("tokens: [{allow: []}]")
    with pytest.raises(ValidationError, match="token"):
        StaticTokens.from_file(str(path))


KEYS: dict[str, Any] = {
    "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ec": ec.generate_private_key(ec.SECP256R1()),
}
ALG = {"rsa": "RS256", "ec": "ES256"}


def jwks() -> dict[str, Any]:
    keys = []
    for kid, key in KEYS.items():
        algo = jwt.algorithms.RSAAlgorithm if kid == "rsa" else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algo.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": ALG[kid], "use": "sig"})
    return {"keys": keys}


def token(kid: str = "rsa", **claims: Any) -> str:
    body = {"iss": "https://issuer.example", "aud": ["broker/event-example/default"], "exp": time.time() + 60}
    body.update(claims)
    return jwt.encode(body, KEYS[kid], algorithm=ALG[kid], headers={"kid": kid})


@pytest.fixture
def verifier(tmp_path: Path) -> JwtVerifier:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()))
    return JwtVerifier.from_jwks_source("https://issuer.example", str(path))


@pytest.mark.parametrize(
    ("make", "status"),
    [
        pytest.param(lambda: token("rsa"), None, id="rsa"),
        pytest.param(lambda: token("ec"), None, id="ec"),
        pytest.param(lambda: token(aud="broker/event-example/default"), None, id="string-audience"),
        pytest.param(lambda: token(exp=time.time() - 120), 401, id="expired"),
        pytest.param(lambda: token(iss="https://evil.example"), 401, id="wrong-issuer"),
        pytest.param(lambda: token(aud=["broker/other/default"]), 403, id="wrong-audience"),
        pytest.param(lambda: token("rsa")[:-4] + "AAAA", 401, id="bad-signature"),
        pytest.param(lambda: "not.a.jwt", 401, id="garbage"),
        pytest.param(
            lambda: jwt.encode(
                {"iss": "https://issuer.example", "aud": "x", "exp": time.time() + 60},
                KEYS["rsa"],
                algorithm="RS256",
                headers={"kid": "unknown"},
            ),
            401,
            id="unknown-kid",
        ),
    ],
)
def test_jwt(verifier: JwtVerifier, make: Any, status: int | None) -> None:
    denied = verifier.check(bearer(make()), b"", ROUTE)
    assert (denied.status if denied else None) == status


@pytest.fixture
def jwks_server() -> Iterator[str]:
    body = json.dumps(jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def test_jwks_from_a_url(jwks_server: str) -> None:
    verifier = JwtVerifier.from_jwks_source("https://issuer.example", jwks_server)
    assert verifier.check(bearer(token("ec")), b"", ROUTE) is None
