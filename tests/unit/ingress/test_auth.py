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
from ingress.auth import Denied, JwtVerifier, StaticTokens
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
        # Not from the query string unless configured: URLs end up in logs.
        pytest.param([], b"access_token=one", ROUTE, 401, id="query-parameter"),
    ],
)
def test_static_tokens(
    tokens: StaticTokens, headers: list[tuple[bytes, bytes]], query: bytes, route: Route, status: int | None
) -> None:
    denied = tokens.check(headers, query, route)
    assert (denied.status if denied else None) == status


def test_the_query_string_token_only_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  - {token: one, allow: ['*']}\n")
    assert StaticTokens.from_file(str(path)).check([], b"access_token=one", ROUTE) is not None
    assert StaticTokens.from_file(str(path), from_query=True).check([], b"access_token=one", ROUTE) is None


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


class _JwksServer:
    """A JWKS on loopback: `document` is served at /jwks.json (`None`: 500), /moved redirects
    there; `reads` counts the requests for it."""

    def __init__(self) -> None:
        self.document: dict[str, Any] | None = jwks()
        self.reads = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/jwks.json")
                    self.end_headers()
                    return
                outer.reads += 1
                body = json.dumps(outer.document).encode() if outer.document is not None else b""
                self.send_response(200 if outer.document is not None else 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/jwks.json"


@pytest.fixture
def jwks_site() -> Iterator[_JwksServer]:
    site = _JwksServer()
    thread = threading.Thread(target=site.server.serve_forever, daemon=True)
    thread.start()
    yield site
    site.server.shutdown()
    site.server.server_close()


@pytest.fixture
def jwks_server(jwks_site: _JwksServer) -> str:
    return jwks_site.url


def test_jwks_from_a_url(jwks_server: str) -> None:
    verifier = JwtVerifier.from_jwks_source("https://issuer.example", jwks_server)
    assert verifier.check(bearer(token("ec")), b"", ROUTE) is None


def test_a_jwks_redirect_is_not_followed(jwks_site: _JwksServer) -> None:
    with pytest.raises(ValidationError, match="redirect"):
        JwtVerifier.from_jwks_source("https://issuer.example", f"{jwks_site.base}/moved")
    assert jwks_site.reads == 0


def test_a_jwks_over_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(ValidationError, match="https://"):
        JwtVerifier.from_jwks_source("https://issuer.example", "http://keys.example.com/jwks.json")


def test_a_token_naming_an_unknown_key_is_refused_even_with_one_key(tmp_path: Path) -> None:
    """No fallback to the JWKS's only key for a token that names another: 401."""
    only_ec = {"keys": [k for k in jwks()["keys"] if k["kid"] == "ec"]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(only_ec))
    verifier = JwtVerifier.from_jwks_source("https://issuer.example", str(path))
    renamed = jwt.encode(
        {"iss": "https://issuer.example", "aud": ["broker/event-example/default"], "exp": time.time() + 60},
        KEYS["ec"],
        algorithm="ES256",
        headers={"kid": "not-ec"},
    )
    assert verifier.check(bearer(renamed), b"", ROUTE) == Denied(401, "the bearer token is not valid")
    nameless = jwt.encode(
        {"iss": "https://issuer.example", "aud": ["broker/event-example/default"], "exp": time.time() + 60},
        KEYS["ec"],
        algorithm="ES256",
    )
    assert verifier.check(bearer(nameless), b"", ROUTE) is None  # no kid: the one key


def _eventually(done: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_rotated_key_is_taken_without_a_restart(jwks_site: _JwksServer) -> None:
    """The JWKS first holds the RSA key only; the EC key rotates in. A token signed with it is
    401 until the JWKS is read again (triggered by the unknown kid, in a thread), then allowed;
    a JWKS that cannot be read keeps the keys as they were."""
    jwks_site.document = {"keys": [k for k in jwks()["keys"] if k["kid"] == "rsa"]}
    verifier = JwtVerifier.from_jwks_source("https://issuer.example", jwks_site.url, refresh_seconds=3600)
    verifier._tried_at -= 60  # the last read a minute ago: an unknown kid may trigger one now
    jwks_site.document = jwks()
    assert verifier.check(bearer(token("ec")), b"", ROUTE) == Denied(401, "the bearer token is not valid")
    _eventually(lambda: verifier.check(bearer(token("ec")), b"", ROUTE) is None)
    assert verifier.check(bearer(token("ec")), b"", ROUTE) is None
    assert jwks_site.reads == 2
    # Unreadable now: the periodic read fails, the keys stay.
    jwks_site.document = None
    verifier._loaded_at -= 7200
    assert verifier.check(bearer(token("rsa")), b"", ROUTE) is None
    _eventually(lambda: jwks_site.reads == 3)
    assert jwks_site.reads == 3
    assert verifier.check(bearer(token("ec")), b"", ROUTE) is None
