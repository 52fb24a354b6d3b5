"""The ingress's HTTP server: HTTP/1.1 (`ingress.http1`) and HTTP/2 (`ingress.http2`) on one port.

The ingress serves one kind of request at a high rate, so it does not go through ASGI: per
request ASGI costs a task, a scope dict, receive/send coroutines and message dicts, which was
about half of the ingress's CPU under load. Here a parser's callbacks collect the request,
`IngressApp.handle` answers it, and the answer is written from a callback when Kafka has
acknowledged: no task and no coroutine per request. Written here rather than taken from a
library because it is measured faster than the best of them (bench/servers.py, docs/benchmarks.md).

What it does, as an HTTP/1.1 origin server:
- a connection that opens with the HTTP/2 preface (prior knowledge), or for which TLS's ALPN
  chose h2, is handed to `ingress.http2`;
- `Upgrade` requests (h2c, websocket) answered in HTTP/1.1, their body read as any other's;
- keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), pipelined requests answered in order;
- chunked request bodies (trailer fields dropped); `Expect: 100-continue` answered before the
  body is read;
- 413 from Content-Length before the body is read, or as soon as a streamed body passes the
  limit; 401/403 from the head alone when authentication is on; 400 for anything the parser
  rejects and for a missing or doubled Host (RFC 9112 section 3.2); the connection is closed
  after each of these, so no leftover body is read as a request, but only after the client
  stops sending (or 2 s), so the answer is not lost to a reset;
- graceful shutdown: stop accepting, close idle connections, answer the requests in progress
  (each after Kafka acknowledged), close; whatever is left after `graceful_timeout` is aborted;
- TLS when given a certificate and key.

Bounds no client can move (HttpServer's arguments; the settings and defaults in brackets):
- connections: `max_connections` open at once [KANAL_INGRESS_MAX_CONNECTIONS, 10,000]; one
  more is answered 503 (Retry-After: 1) and closed before anything is read, and a line says so
  at most every 10 s, with the count; a TLS handshake must end within `tls_handshake_timeout`
  [10 s] (asyncio's default is 60 s);
- time, HTTP/1.1: a request's head within `head_timeout` of its first byte
  [KANAL_INGRESS_HEAD_TIMEOUT, 10 s], the whole request within `body_timeout` more
  [KANAL_INGRESS_BODY_TIMEOUT, 30 s], else 408 and the connection closed; an idle
  connection closed after `keep_alive` [75 s]; a client that takes none of its answers for
  `body_timeout` is dropped. Each is met at most half the shortest of them late;
- input: MAX_HEADER_BYTES (64 KiB) of request line and header fields, each field counting 128
  bytes more than its length (so MAX_HEADER_FIELDS, 512, fields at the most), else 431; the
  app's body limit, and chunk framing at most twice that, else 413; MAX_PIPELINED (128)
  requests waiting behind the one being answered, reading paused meanwhile;
- unknown paths: a body over 64 KiB (or chunked) to a path no Broker or Channel serves is
  answered 404 before it is read, after at most one refresh of the routes (the app's
  `unrouted`, which lets at most 64 requests wait for one), and its connection closes;
- output: reading and parsing pause while the write buffer is over its high-water mark, so a
  client that sends and never reads costs at most that, one read and the waiting requests.
HTTP/2 has bounds of its own (`ingress.http2_bounds.Http2Limits`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ingress.app import Request, Response
from ingress.http1 import MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_PIPELINED, Http1Connection
from ingress.http2 import Http2Connection
from ingress.http2_bounds import Http2Limits

__all__ = ["MAX_HEADER_BYTES", "MAX_HEADER_FIELDS", "MAX_PIPELINED", "App", "Backlog", "HttpServer"]

log = logging.getLogger(__name__)

# How often a line says that connections are being refused (with how many since the last).
_REFUSALS_LOGGED_EVERY = 10.0


class App(Protocol):
    """What the server needs of the application behind it (`ingress.app.IngressApp`)."""

    max_body: int

    def too_large(self, path: str, headers: list[tuple[bytes, bytes]]) -> Response: ...

    def refused(self, request: Request) -> Response | None: ...

    def unrouted(self, request: Request) -> Response | asyncio.Future[Response | None] | None: ...

    def timed_out(self, request: Request | None) -> Response: ...

    def disconnected(self, path: str, headers: list[tuple[bytes, bytes]]) -> None: ...

    def handle(self, request: Request, reply: Callable[[Response], None]) -> Response | None: ...


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the server's HTTP/1.1 connections hold for their clients (for tests and debugging)."""

    requests: int  # read and waiting behind the one being answered
    unread: int  # bytes received and not yet parsed (reading is paused meanwhile)
    unsent: int  # bytes of answers the clients have not taken yet


class HttpServer:
    """Serves `app` on host:port until `shutdown()`."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        *,
        graceful_timeout: float = 10.0,
        keep_alive: float = 75.0,
        head_timeout: float = 10.0,
        body_timeout: float = 30.0,
        max_connections: int = 10_000,
        tls_handshake_timeout: float = 10.0,
        certfile: str | None = None,
        keyfile: str | None = None,
        http2: Http2Limits | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        # Idle connections stay open longer than clients keep them (aiohttp: 15 s), so a client
        # never reuses a connection the server is closing at that moment.
        self.keep_alive = keep_alive
        # HTTP/1.1: from a request's first byte to the end of its head, then to its end; and
        # how long a client may take none of its answers.
        self.head_timeout = head_timeout
        self.body_timeout = body_timeout
        # Each HTTP/1.1 connection looks at its clocks this often (no clock is read per request),
        # so a deadline is met at most this late.
        self.tick = min(head_timeout, body_timeout, keep_alive) / 2
        self.max_connections = max_connections
        self.tls_handshake_timeout = tls_handshake_timeout
        self.http2 = http2 or Http2Limits()  # what each HTTP/2 connection may hold
        self.connections: set[Http1Connection | Http2Connection] = set()
        self._refusals = 0  # connections refused over the cap since the last line saying so
        self._refusals_logged = -_REFUSALS_LOGGED_EVERY
        self.stopping = False
        self.started = False
        self._certfile = certfile
        self._keyfile = keyfile
        self.tls = certfile is not None
        self._stop = asyncio.Event()
        self._drained = asyncio.Event()  # set when the last connection closes while stopping

    def protocol(self) -> asyncio.Protocol:
        """A new connection of this server, for whatever transport it is given (`serve` uses it
        for each accepted socket; bench/instructions.py for stand-ins)."""
        return Http1Connection(self)

    def admit(self, connection: Http1Connection) -> bool:
        """Count a new connection in, or refuse it (False) when `max_connections` are open."""
        if len(self.connections) < self.max_connections:
            self.connections.add(connection)
            return True
        self._refusals += 1
        now = time.monotonic()
        if now - self._refusals_logged >= _REFUSALS_LOGGED_EVERY:
            log.warning(
                "refusing new connections: %d connections open, the most allowed "
                "(KANAL_INGRESS_MAX_CONNECTIONS); %d refused since this was last logged",
                len(self.connections),
                self._refusals,
            )
            self._refusals_logged = now
            self._refusals = 0
        return False

    def backlog(self) -> Backlog:
        """What the HTTP/1.1 connections hold for their clients, summed."""
        requests = unread = unsent = 0
        for connection in self.connections:
            if isinstance(connection, Http1Connection):
                waiting, pending, buffered = connection.backlog()
                requests += waiting
                unread += pending
                unsent += buffered
        return Backlog(requests, unread, unsent)

    def closed(self, connection: Http1Connection | Http2Connection) -> None:
        self.connections.discard(connection)
        if self.stopping and not self.connections:
            self._drained.set()

    async def serve(self) -> None:
        context: ssl.SSLContext | None = None
        if self._certfile:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self._certfile, self._keyfile)
            context.set_alpn_protocols(["h2", "http/1.1"])
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            self.protocol,
            self.host,
            self.port,
            backlog=4096,
            ssl=context,
            reuse_address=True,
            # asyncio's default is 60 s, for which a socket that never says a word is kept.
            ssl_handshake_timeout=self.tls_handshake_timeout if context is not None else None,
        )
        self.started = True
        try:
            await self._stop.wait()
        finally:
            self.stopping = True
            server.close()
            for connection in list(self.connections):
                connection.stop()
            if self.connections:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.graceful_timeout):
                        await self._drained.wait()
            for connection in list(self.connections):
                connection.abort()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def shutdown(self) -> None:
        self._stop.set()
