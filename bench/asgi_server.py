"""Running an ASGI app with uvicorn under the caller's signal handling, for the benchmarks'
baselines (bench/hello_asgi.py) and counting sink (bench/sink.py). Kanal itself does not run on
uvicorn, so uvicorn is in the `bench` extra only.

uvicorn's `Server.serve` installs its own SIGINT/SIGTERM handlers and re-raises the signal when
it returns, which would end the process before a component has flushed its Kafka producer.
Kanal's entry points own the signals instead and call `shutdown()`; serving then stops accepting,
lets in-flight requests finish, and returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import uvicorn

__all__ = ["AsgiServer"]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class AsgiServer:
    """One uvicorn server (httptools parser, no access log) for an ASGI callable."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        graceful_timeout: float = 10.0,
        certfile: str | None = None,
        keyfile: str | None = None,
    ) -> None:
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http="httptools",
            loop=loop,
            lifespan="off",
            access_log=False,
            # No X-Forwarded-* rewriting: nothing in Kanal reads the client address, and the
            # middleware costs every request.
            proxy_headers=False,
            log_level="warning",
            timeout_graceful_shutdown=int(graceful_timeout),
            backlog=4096,
            # Idle connections stay open longer than clients keep them (aiohttp: 15 s), so a
            # client never reuses a connection the server is closing at that moment.
            timeout_keep_alive=75,
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
        self._server = _Server(config)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    async def serve(self) -> None:
        await self._server.serve()

    def shutdown(self) -> None:
        self._server.should_exit = True
