"""The ingress's own HTTP/1.1 server on loopback, for tests that speak raw bytes to it: a server
with the real IngressApp in front of an in-memory sink (or one that holds acknowledgements back,
to keep requests in flight), a binary-mode CloudEvent request, and a response reader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from channel.embedded import free_port
from channel.events import KafkaRecord
from channel.producer import Done
from channel.settings import Settings
from ingress.app import IngressApp
from ingress.auth import Authenticator
from ingress.http import HttpServer
from ingress.routing import Route
from support.memory_sink import MemoryEventSink

__all__ = ["PATH", "HeldSink", "closed", "connect", "ids", "post", "read_response", "serve", "serving"]

PATH = "/ns/default"


class HeldSink(MemoryEventSink):
    """Acknowledges nothing until `release()`: requests stay in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Done] = []

    def submit(self, topic: str, records: Sequence[KafkaRecord], done: Done) -> None:
        self.topics.setdefault(topic, []).extend(records)
        self.held.append(done)

    def release(self) -> None:
        for done in self.held:
            done(None)


async def serve(
    sink: MemoryEventSink,
    auth: Authenticator | None = None,
    *,
    app: IngressApp | None = None,
    **options: Any,
) -> tuple[HttpServer, asyncio.Task[None]]:
    """A started server (and the task serving it) for `app`, by default an IngressApp with a body
    limit of 1000 bytes and one Broker, ns/default, writing to topic `topic`."""
    if app is None:
        app = IngressApp(Settings(ingress_max_body_bytes=1000), sink, ready=lambda: True, auth=auth)
        app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic")}
    server = HttpServer(app, "127.0.0.1", free_port(), **options)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


@contextlib.asynccontextmanager
async def serving(sink: MemoryEventSink, **options: Any) -> AsyncIterator[HttpServer]:
    """`serve`, stopped at the end of the block."""
    server, task = await serve(sink, **options)
    try:
        yield server
    finally:
        server.shutdown()
        await task


def post(
    event_id: str, body: bytes = b'{"a": 1}', *extra: str, version: str = "1.1", path: str = PATH
) -> bytes:
    head = [
        f"POST {path} HTTP/{version}",
        "Host: ingress",
        f"ce-id: {event_id}",
        "ce-specversion: 1.0",
        "ce-type: t",
        "ce-source: s",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *extra,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(
    reader: asyncio.StreamReader, timeout: float = 5
) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
    return status, headers, body


async def closed(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    """Whether the server closes the connection, sending nothing more, within `timeout` seconds."""
    with contextlib.suppress(ConnectionError):
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    return True


async def connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


def ids(sink: MemoryEventSink) -> list[str]:
    return [dict(r.headers)["ce_id"].decode() for r in sink.topics.get("topic", [])]
