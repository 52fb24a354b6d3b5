"""The CLI's admin client sends its bearer token, and a 401 says where a token is looked for."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from kanal.cli.client import AdminClient, ClientError

TOKEN = "cli-token-" + "c" * 20


class _Controller(BaseHTTPRequestHandler):
    """Answers like the admin API: 200 for the right token, else a 401 with a JSON problem."""

    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            body, status = {"items": []}, 200
        else:
            body, status = {"problems": [{"path": "", "message": "the bearer token is not valid"}]}, 401
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def controller() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Controller)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Controller.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_token_is_sent_as_a_bearer_token(controller: str) -> None:
    assert AdminClient(controller, token=TOKEN).list("Broker", None) == []
    assert _Controller.seen == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize("token", [None, "another-token-" + "a" * 20], ids=["none", "another"])
def test_a_refusal_says_where_the_token_is_looked_for(controller: str, token: str | None) -> None:
    client = AdminClient(controller, token=token, token_hint="/home/u/.config/kanal/tokens/localhost-8081")
    with pytest.raises(ClientError) as caught:
        client.list("Broker", None)
    assert caught.value.status == 401
    assert str(caught.value) == (
        "the bearer token is not valid; set KANAL_CONTROLLER_TOKEN or KANAL_CONTROLLER_TOKEN_FILE to the"
        " controller's token, or write it to /home/u/.config/kanal/tokens/localhost-8081"
        " (docs/security.md, The control API token)"
    )
    assert _Controller.seen == [None if token is None else f"Bearer {token}"]
