"""The ingress's HTTP/1.1 server: an asyncio protocol around the httptools parser.

The ingress serves one kind of request at a high rate, so it does not go through ASGI: per
request ASGI costs a task, a scope dict, receive/send coroutines and message dicts, which was
about half of the ingress's CPU under load. Here the parser's callbacks collect the request,
`IngressApp.handle` answers it, and the answer is written from a callback when Kafka has
acknowledged: no task and no coroutine per request.

What it does, as an HTTP/1.1 origin server:
- a connection that opens with the HTTP/2 preface (prior knowledge), or for which TLS's ALPN
  chose h2, is handed to `ingress.http2`;
- `Upgrade` requests (h2c, websocket) answered in HTTP/1.1, their body read as any other's;
- keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), idle connections closed after
  `keep_alive` seconds; a request that takes longer than that to arrive whole is answered 408
  and its connection closed;
- pipelined requests answered in order (reading pauses while some are queued);
- chunked request bodies; `Expect: 100-continue` answered before the body is read;
- 413 from Content-Length before the body is read, or as soon as a streamed body passes the
  limit; 401/403 from the head alone when authentication is on; 431 for header fields over
  64 KiB (counted as they arrive); 400 for anything the parser rejects; the connection is
  closed after each of these, so no leftover body is read as a request, but only after the
  client stops sending (or 2 s), so the answer is not lost to a reset;
- graceful shutdown: stop accepting, close idle connections, answer the requests in progress
  (each after Kafka acknowledged), close; whatever is left after `graceful_timeout` is aborted;
- TLS when given a certificate and key.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Protocol, cast
from urllib.parse import unquote

import httptools

from ingress.app import ACCEPTED, Request, Response, declared_over, header_value, json_response
from ingress.http2 import PREFACE, Http2Connection
from ingress.http2_bounds import Http2Limits

__all__ = ["App", "HttpServer"]

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
# Pipelined requests queued behind the one being answered before reading pauses.
_MAX_QUEUED = 16
_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
# How long a connection refused mid-request keeps reading (and dropping) before it closes.
_LINGER_SECONDS = 2.0

_date_second = -1
_date_line = b""
_accepted = b""


def _date() -> bytes:
    """The Date header line, formatted once a second."""
    global _date_second, _date_line, _accepted
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_line = b"date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        _accepted = b"HTTP/1.1 202 Accepted\r\n" + _date_line + b"content-length: 0\r\n\r\n"
    return _date_line


def _serialize(response: Response, keep_alive: bool, head: bool) -> bytes:
    if response is ACCEPTED and keep_alive:
        _date()
        return _accepted
    status = response.status
    body = response.body
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")), _date()]
    for name, value in response.headers:
        parts.append(b"%s: %s\r\n" % (name, value))
    parts.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        parts.append(_CLOSE)
    parts.append(b"\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


class App(Protocol):
    """What the server needs of the application behind it (`ingress.app.IngressApp`)."""

    max_body: int

    def too_large(self, path: str, headers: list[tuple[bytes, bytes]]) -> Response: ...

    def refused(self, request: Request) -> Response | None: ...

    def timed_out(self, request: Request | None) -> Response: ...

    def disconnected(self, path: str, headers: list[tuple[bytes, bytes]]) -> None: ...

    def handle(self, request: Request, reply: Callable[[Response], None]) -> Response | None: ...


# A request ready to answer, or an answer decided before its request was read (a 413, a 400),
# with whether the connection stays open afterwards and whether it was a HEAD.
_Item = tuple[Request | Response, bool, bool]


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # One timer per connection, not one per request: it checks when the connection last
        # became idle (connected, or answered with nothing more to do).
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = self._loop.time()
        # The request being read.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._length: bytes | None = None  # its Content-Length
        self._expect: bytes | None = None  # and Expect
        self._header_bytes = 0
        self._head_open = False  # a request's head has begun and not ended
        self._upgrade_body: int | None = None  # body bytes still to come of an Upgrade request
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._keep = True
        # Requests read and waiting for the one being answered (pipelining).
        self._queue: deque[_Item] = deque()
        self._busy = False  # an answer is being produced
        self._paused = False
        self._done = False  # an error ended the connection: the rest of the input is ignored
        self._linger = False  # ... and the connection closes only after the client stops sending
        # Until the first bytes tell: an HTTP/2 client with prior knowledge opens with PREFACE.
        self._fresh = True
        self._sniffed = b""

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses
        self._server.connections.add(self)
        self._timer = self._loop.call_later(self._server.keep_alive, self._idle)
        if self._server.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._to_http2(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._request is not None and not self._done:
            self._app.disconnected(self._request.path, self._request.headers)
        self._transport = None  # answers still to come are dropped; their events stay stored

    def data_received(self, data: bytes) -> None:
        if self._fresh:
            data = self._sniffed + data
            opening = data[: len(PREFACE)]
            if PREFACE.startswith(opening):
                if len(opening) < len(PREFACE):
                    self._sniffed = data  # the start of the preface, or of a request: wait
                    return
                self._to_http2(data)
                return
            self._fresh = False
            self._sniffed = b""
        if self._done:
            return
        if self._upgrade_body is not None:
            self._read_upgrade_body(data)
            return
        head_was_open = self._head_open
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self._upgrade_body is None:
                self._end(_error(400, "protocol upgrades are not supported; send HTTP/1.1 requests"))
                return
            # The parser stops at the end of an Upgrade request's head: the body and whatever
            # follows are read here, and a new parser takes the next request.
            self._parser = httptools.HttpRequestParser(self)
            self._read_upgrade_body(data[exc.args[0] :])
            return
        except httptools.HttpParserError as exc:
            self._end(_error(400, f"malformed HTTP request: {exc}"))
        if head_was_open and self._head_open and not self._done:
            # All of `data` went into one unfinished head: the parser buffers a header field
            # until it ends, so a field that never ends is cut off here.
            self._count_header_bytes(len(data))

    def _to_http2(self, data: bytes) -> None:
        """Hand the connection to an HTTP/2 protocol (prior knowledge, or ALPN over TLS)."""
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server.connections.discard(self)
        self._transport = None
        http2 = Http2Connection(self._server)
        transport.set_protocol(http2)
        http2.connection_made(transport)
        if data:
            http2.data_received(data)

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._head_open = True
        self._url = b""
        self._headers = []
        self._length = None
        self._expect = None
        self._header_bytes = 0
        self._body = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        if self._done:
            return
        self._url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._done:
            return
        name = name.lower()
        self._headers.append((name, value))
        if name == b"content-length":  # the parser refuses a second one that differs
            self._length = value
        elif name == b"expect":
            self._expect = value
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:  # as _count_header_bytes, inline: once per field
            self._count_header_bytes(0)

    def _count_header_bytes(self, size: int) -> None:
        # Checked as they arrive, so header fields that never end cannot fill the memory.
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._end(_error(431, f"request line and header fields larger than {MAX_HEADER_BYTES} bytes"))

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._done:
            return
        parser = self._parser
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            self._end(_error(400, "malformed request target"))
            return
        path = url.path.decode("latin-1") if url.path else "/"
        if "%" in path:
            path = unquote(path)
        headers = self._headers
        self._request = Request(parser.get_method().decode("latin-1"), path, headers, query=url.query or b"")
        self._keep = parser.should_keep_alive()
        length = self._length
        if declared_over(length, self._app.max_body):
            self._end(self._app.too_large(path, headers))  # decided before reading the body
            return
        refusal = self._app.refused(self._request)  # so is an authentication failure
        if refusal is not None:
            self._end(refusal)
            return
        if parser.should_upgrade():
            # An Upgrade (h2c, websocket) is declined by answering in HTTP/1.1, as a server may.
            # The parser would take the request as ending with its head, dropping its body.
            if header_value(headers, b"transfer-encoding") is not None or (
                length is not None and not length.isdigit()
            ):
                self._end(_error(400, "an Upgrade request's body must have a Content-Length"))
                return
            self._upgrade_body = int(length) if length is not None else 0
        expect = self._expect
        if (
            expect is not None
            and expect.lower() == b"100-continue"
            and not self._busy
            and parser.get_http_version() == "1.1"
        ):
            assert self._transport is not None
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._done or self._request is None:
            return
        self._size += len(body)
        if self._size > self._app.max_body:
            self._end(self._app.too_large(self._request.path, self._request.headers))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._upgrade_body is None:
            self._complete()

    def _read_upgrade_body(self, data: bytes) -> None:
        assert self._upgrade_body is not None
        taken = data[: self._upgrade_body]
        self._upgrade_body -= len(taken)
        if taken:
            self.on_body(taken)
        if self._upgrade_body > 0 or self._done:
            return
        self._upgrade_body = None
        self._complete()
        rest = data[len(taken) :]
        if rest:
            self.data_received(rest)

    def _complete(self) -> None:
        request = self._request
        if self._done or request is None:
            return
        self._request = None
        body = self._body
        request.body = body[0] if len(body) == 1 else b"".join(body)
        item = (request, self._keep, request.method == "HEAD")
        if self._busy:
            self._queue.append(item)
            if len(self._queue) >= _MAX_QUEUED and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True
            return
        self._start(item)

    # -- answering ----------------------------------------------------------------------------

    def _start(self, item: _Item) -> None:
        request, keep, head = item
        self._busy = True
        if isinstance(request, Response):
            self._answer(keep, head, request)
            return
        try:
            answer = self._app.handle(request, partial(self._answer, keep, head))
        except Exception:
            log.exception("handling %s %s", request.method, request.path)
            answer = _error(500, "internal error; the event was not stored")
        if answer is not None:
            self._answer(keep, head, answer)

    def _answer(self, keep: bool, head: bool, response: Response) -> None:
        transport = self._transport
        self._busy = False
        if transport is None or transport.is_closing():
            return
        keep = keep and not self._server.stopping
        transport.write(_serialize(response, keep, head))
        if not keep:
            self._done = True
            if self._linger and transport.can_write_eof():
                # Lingering close: the client may still be sending what was refused. Closing now
                # would answer its next bytes with a reset, and a reset can discard the answer
                # before the client reads it. So stop writing, read and drop for a while, close.
                transport.write_eof()
                if self._paused:
                    self._paused = False
                    transport.resume_reading()
                self._loop.call_later(_LINGER_SECONDS, transport.close)
            else:
                transport.close()
            return
        if self._queue:
            if self._paused:
                self._paused = False
                transport.resume_reading()
            self._start(self._queue.popleft())
        else:
            self._idle_since = self._loop.time()

    def _end(self, response: Response) -> None:
        """Answer `response` (after the answers owed before it) and close: the input is unusable."""
        self._done = True
        self._linger = True
        self._request = None
        if self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        item = (response, False, False)
        if self._busy:
            self._queue.append(item)
        else:
            self._start(item)

    # -- idle connections and shutdown ---------------------------------------------------------

    def _idle(self) -> None:
        """Close a connection idle (or reading one request) for `keep_alive` seconds."""
        self._timer = None
        if self._transport is None:
            return
        keep_alive = self._server.keep_alive
        waited = self._loop.time() - self._idle_since
        if self._busy or self._queue or waited < keep_alive:
            delay = keep_alive if self._busy or self._queue else keep_alive - waited
            self._timer = self._loop.call_later(delay, self._idle)
            return
        # A request begun and not whole by now is answered 408 (nothing of it is stored);
        # a connection with no request begun is closed without a word, as keep-alive allows.
        if self._request is not None or self._head_open:
            self._end(self._app.timed_out(self._request))
        else:
            self._transport.close()

    def stop(self) -> None:
        """The server is stopping: close now if idle, else after the answers in progress."""
        if self._request is None and not self._busy and not self._queue and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


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
        self.http2 = http2 or Http2Limits()  # what each HTTP/2 connection may hold
        self.connections: set[_Connection | Http2Connection] = set()
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
        return _Connection(self)

    def closed(self, connection: _Connection | Http2Connection) -> None:
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
            self.protocol, self.host, self.port, backlog=4096, ssl=context, reuse_address=True
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
