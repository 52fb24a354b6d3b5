"""Recording HTTP sinks on loopback: real servers that keep every request they receive."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from channel.embedded import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def reply_event(event_id: str, event_type: str, body: bytes = b"{}", source: str = "replier") -> web.Response:
    """A 200 carrying a binary-mode JSON CloudEvent: a subscriber's reply."""
    return web.Response(
        status=200,
        body=body,
        headers={
            "ce-id": event_id,
            "ce-specversion": "1.0",
            "ce-type": event_type,
            "ce-source": source,
            "content-type": "application/json",
        },
    )


# Given the request number (1-based) and the request, the response to give.
Responder = Callable[[int, Received], web.StreamResponse | Awaitable[web.StreamResponse]]


class RecordingSink:
    """An aiohttp server that records requests and answers with `responder` (default 202)."""

    def __init__(self, responder: Responder | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.tls = tls  # serve https (at https://localhost:PORT/) with this server context
        self.responder = responder or (lambda n, r: web.Response(status=202))
        self.port = free_port()
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/" if self.tls else f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            request.method,
            request.path,
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
        )
        self.requests.append(received)
        self._changed.set()
        response = self.responder(len(self.requests), received)
        if inspect.isawaitable(response):
            response = await response
        return response

    async def start(self) -> RecordingSink:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until at least `count` requests arrived; fails the test with what did arrive."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"expected {count} requests at {self.url}, got {len(self.requests)}: "
                    f"{[r.header('ce-id') for r in self.requests]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return self.requests

    def ids(self) -> list[str | None]:
        return [r.header("ce-id") for r in self.requests]
