"""A subscriber on loopback that answers with raw bytes: whatever a test needs, hostile included
(heads without end, interim answers, bodies over the limit, bytes after the answer).

aiohttp (as `support.sinks` uses it) writes only well-formed answers; this server reads each
request whole (head and Content-Length body), records it, and writes what `answer` gives for it,
on kept-alive connections. `answer` may be a coroutine function, for answers written in pieces:
it then gets the writer and writes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Answer", "RawRequest", "RawSubscriber", "answering", "raw_subscriber"]


@dataclass(frozen=True)
class RawRequest:
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == wanted:
                return value.strip().decode("latin-1")
        return None


# Given the request number (1-based) and the request: the bytes to answer with, or None when the
# answer was written through the writer (a streaming answer).
Answer = Callable[[int, RawRequest, asyncio.StreamWriter], Awaitable[bytes | None]]


@dataclass
class RawSubscriber:
    answer: Answer
    port: int = 0
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def ids(self) -> list[str | None]:
        return [r.header("ce-id") for r in self.requests]

    async def wait_for(self, count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request = RawRequest(head, b"")
                length = int(request.header("content-length") or 0)
                request = RawRequest(head, await reader.readexactly(length))
                self.requests.append(request)
                self.arrived.set()
                data = await self.answer(len(self.requests), request, writer)
                if data is not None:
                    writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away (or gave up on this answer)
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_subscriber(answer: Answer) -> AsyncIterator[RawSubscriber]:
    subscriber = RawSubscriber(answer)
    server = await asyncio.start_server(subscriber._serve, "127.0.0.1", 0)
    subscriber.port = server.sockets[0].getsockname()[1]
    async with server:
        yield subscriber
        server.close()


def answering(data: bytes) -> Answer:
    """Every request answered with `data`."""

    async def answer(n: int, request: RawRequest, writer: asyncio.StreamWriter) -> bytes:
        return data

    return answer
