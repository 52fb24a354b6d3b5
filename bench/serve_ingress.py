"""`kanal ingress` with its IngressApp served by a library HTTP server instead of Kanal's own, for
the server comparison (bench/servers.py).

    python bench/serve_ingress.py uvicorn|granian-asgi|granian-rsgi

Everything but the server is the ingress's own: settings from the environment, the resource log,
the Kafka event sink, readiness. uvicorn runs with httptools (and uvloop when installed), as
bench/asgi_server.py runs it; granian (a Rust server built on hyper) runs embedded in this
process's event loop, one runtime thread, either through ASGI or through its own RSGI interface,
whose request and response calls are cheaper than ASGI's messages.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from asgi_server import AsgiServer  # bench/, this script's folder

from channel.settings import Settings
from ingress.app import IngressApp, Request, Response, declared_over, header_value
from ingress.service import IngressService

SERVERS = ("uvicorn", "granian-asgi", "granian-rsgi")


class _Rsgi:
    """IngressApp through granian's RSGI: the body read whole, `handle` answers by callback."""

    def __init__(self, app: IngressApp) -> None:
        self._app = app

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in scope.headers.items()]
        request = Request(scope.method, scope.path, headers, query=scope.query_string.encode("latin-1"))
        app = self._app
        if declared_over(header_value(headers, b"content-length"), app.max_body):
            answer = app.too_large(request.path, headers)
        else:
            request.body = await protocol()
            later: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            answer = app.handle(request, later.set_result) or await later
        protocol.response_bytes(
            answer.status,
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers],
            answer.body,
        )


class _Granian:
    def __init__(self, app: IngressApp, host: str, port: int, interface: str) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.server.embed import Server

        target: Any = app if interface == "asgi" else _Rsgi(app)
        self._server = Server(
            target,
            address=host,
            port=port,
            interface=Interfaces.ASGINL if interface == "asgi" else Interfaces.RSGI,
            http=HTTPModes.auto,
            websockets=False,
            backlog=4096,
            log_enabled=False,
        )

    async def serve(self) -> None:
        await self._server.serve()

    def shutdown(self) -> None:
        self._server.stop()


async def main(kind: str) -> None:
    settings = Settings()
    service = IngressService(settings)
    host, port = settings.host, settings.ingress_port
    server: Any = (
        AsgiServer(service.app, host, port)
        if kind == "uvicorn"
        else _Granian(service.app, host, port, kind.removeprefix("granian-"))
    )
    service._server = server  # the comparison swaps the server and nothing else
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.shutdown)
    await service.run()


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in SERVERS:
        sys.exit(f"usage: serve_ingress.py {'|'.join(SERVERS)}")
    asyncio.run(main(sys.argv[1]))
