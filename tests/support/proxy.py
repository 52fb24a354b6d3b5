"""A forward HTTP proxy on loopback for tests: plain requests in absolute form, and CONNECT tunnels.

Every destination name resolves to 127.0.0.1 here, so tests can use names that no DNS knows
(`hooks.test`) and still reach their loopback servers, as a proxy resolves for its clients.
Plain requests are sent on one at a time, each with a Content-Length (enough for the tests'
servers); each client connection is forwarded to the destination of its first request (enough
for a client that keeps one destination per connection, as Kanal's does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["ForwardProxy", "forward_proxy"]


@dataclass
class ForwardProxy:
    port: int = 0
    # With credentials set, requests without this exact Proxy-Authorization value get a 407.
    credentials: str | None = None
    refuse_tunnels: bool = False
    lines: list[str] = field(default_factory=list)  # each connection's first request line
    authorizations: list[str | None] = field(default_factory=list)
    forwarded_heads: list[bytes] = field(default_factory=list)  # plain requests as sent on

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        up_reader: asyncio.StreamReader | None = None
        first = True
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                if first:
                    self.lines.append(line)
                    first = False
                method, target, version = line.split(" ", 2)
                headers = [f.split(":", 1) for f in fields if ":" in f]
                authorization = next(
                    (v.strip() for n, v in headers if n.lower() == "proxy-authorization"), None
                )
                self.authorizations.append(authorization)
                if self.credentials is not None and authorization != self.credentials:
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
                    return
                if method == "CONNECT":
                    if self.refuse_tunnels:
                        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                        return
                    _, port = target.rsplit(":", 1)
                    up_reader, upstream = await asyncio.open_connection("127.0.0.1", int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
                    return
                # A plain request in absolute form: sent on in origin form, without the
                # proxy's credentials; its answer (with a Content-Length) read back whole.
                assert target.startswith("http://"), target
                authority, _, path = target[len("http://") :].partition("/")
                if upstream is None or up_reader is None:
                    port = int(authority.rsplit(":", 1)[1]) if ":" in authority else 80
                    up_reader, upstream = await asyncio.open_connection("127.0.0.1", port)
                kept = [f for f in fields if f and not f.lower().startswith("proxy-authorization:")]
                sent = f"{method} /{path} {version}\r\n".encode() + "".join(f + "\r\n" for f in kept).encode()
                self.forwarded_heads.append(sent)
                upstream.write(sent + b"\r\n" + await reader.readexactly(_length(head)))
                answer = await up_reader.readuntil(b"\r\n\r\n")
                writer.write(answer + await up_reader.readexactly(_length(answer)))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            writer.close()


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def forward_proxy(**options: object) -> AsyncIterator[ForwardProxy]:
    proxy = ForwardProxy(**options)  # type: ignore[arg-type]
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy
        server.close()
