"""The second baseline for the ingress benchmark: Kanal's own HTTP server (ingress.http, the
one the ingress runs on) with an app that answers 202 without parsing or storing anything.

bench/hello_asgi.py is the baseline the issue names (a bare ASGI app on uvicorn+httptools);
this one shows what is left for Kanal's own work once the HTTP stack is as lean as it is now.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

from ingress.app import ACCEPTED, Request, Response
from ingress.http import HttpServer


class HelloApp:
    """An `ingress.http.App` answering every request 202."""

    max_body = 1 << 20

    def too_large(self, path: str, headers: list[tuple[bytes, bytes]]) -> Response:
        return Response(413, [])

    def refused(self, request: Request) -> Response | None:
        return None

    def unrouted(self, request: Request) -> Response | asyncio.Future[Response | None] | None:
        return None

    def timed_out(self, request: Request | None) -> Response:
        return Response(408, [])

    def disconnected(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        pass

    def handle(self, request: Request, reply: Callable[[Response], None]) -> Response | None:
        return ACCEPTED


if __name__ == "__main__":
    server = HttpServer(HelloApp(), "127.0.0.1", int(sys.argv[1]))
    try:
        import uvloop

        uvloop.run(server.serve())
    except ImportError:
        asyncio.run(server.serve())
