"""One HTTP/1.1 connection of the ingress's server: an asyncio protocol around the httptools parser.

The parser's callbacks collect each request, `App.handle` answers it, and the answer is written
when it is known: at once, or from a callback once Kafka has acknowledged. No task and no
coroutine per request. Pipelined requests queue behind the one being answered and are answered
in order, by a loop (one answer after another, never a call inside a call).

Everything a client sends or leaves unread is bounded (`ingress.http` lists the figures):
- the input: at most MAX_PIPELINED requests wait behind the one being answered. The parser
  cannot be stopped midway through what it is given, so a read goes to it whole only when it is
  too short to complete more requests than the queue has places for; a longer one goes a
  request at a time (to the end of its head, then to the end of a body of known length). What
  the queue cannot take waits unparsed, reading paused, until the queue is down to a quarter;
- the output: while the transport's write buffer is over its high-water mark
  (`pause_writing`) nothing more is read or parsed; a client that takes nothing for
  `body_timeout` seconds is dropped, and so is one that takes nothing of a last answer;
- heads: MAX_HEADER_BYTES counted as they arrive (a field the parser keeps until it ends
  included; each field counts 128 bytes more than its length, so at most MAX_HEADER_FIELDS of
  them); trailer fields are counted and dropped, never headers of the event;
- bodies: the app's limit, and their framing (chunk sizes, extensions) at most twice that; a
  body of many small pieces is gathered into one buffer;
- time: a head within `head_timeout` of its first byte, the whole request within
  `body_timeout` more, else 408; an idle connection is closed after `keep_alive`. One timer a
  connection looks at these every `tick` seconds, so no clock is read per request; the request
  clocks stop while the server holds the input.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

import httptools

from ingress.app import ACCEPTED, Request, Response, declared_over, header_value, json_response
from ingress.http2 import PREFACE, Http2Connection

if TYPE_CHECKING:
    from ingress.http import HttpServer

__all__ = ["MAX_HEADER_BYTES", "MAX_HEADER_FIELDS", "MAX_PIPELINED", "Http1Connection"]

log = logging.getLogger(__name__)

# The request line and header fields of one request, counted as they arrive, each field
# counting _FIELD_COST bytes more than its length (about what it costs in memory), so that many
# small fields hold no more than a few large ones: MAX_HEADER_FIELDS of them at the most.
MAX_HEADER_BYTES = 64 * 1024
_FIELD_COST = 128
MAX_HEADER_FIELDS = MAX_HEADER_BYTES // _FIELD_COST
# Requests read and waiting behind the one being answered; reading resumes at a quarter.
MAX_PIPELINED = 128
_RESUME_AT = MAX_PIPELINED // 4
# Where a head ends (the parser takes no other line ending): a read has at most one more
# request end in it than it has of these.
_HEAD_END = b"\r\n\r\n"
_SHORTEST_REQUEST = len(b"GET / HTTP/1.0\r\n\r\n")
# A read no longer than this completes no more requests than an empty queue has places for.
_WHOLE = _SHORTEST_REQUEST * (MAX_PIPELINED - 1)
_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_OVER_CAPACITY = (
    b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n" + _CLOSE + b"\r\n"
)
# A body larger than this (or chunked) to an unknown path is refused before it is read, and
# its connection closes; a smaller one is read and dropped, and the connection goes on.
_SMALL_BODY = 64 * 1024
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


class _Dropped(list[tuple[bytes, bytes]]):
    """Where trailer fields go: counted against MAX_HEADER_BYTES as header fields are, and never
    kept, so none becomes a header of the event after the head was checked."""

    def append(self, field: tuple[bytes, bytes]) -> None:
        pass


_TRAILERS = _Dropped()


# A request ready to answer, or an answer decided before its request was read (a 413, a 400),
# with whether the connection stays open afterwards and whether it was a HEAD.
_Item = tuple[Request | Response, bool, bool]


class Http1Connection(asyncio.Protocol):
    # Slots: with more than 30 attributes in a __dict__, CPython stops specialising their
    # loads and stores, which made every request about 10% dearer.
    __slots__ = (
        "_app",
        "_body",
        "_busy",
        "_deciding",
        "_done",
        "_ended",
        "_expect",
        "_framed",
        "_framing",
        "_fresh",
        "_full",
        "_head_open",
        "_header_bytes",
        "_headers",
        "_hosts",
        "_idle_for",
        "_keep",
        "_length",
        "_linger",
        "_lingering",
        "_loop",
        "_messages",
        "_open_for",
        "_parser",
        "_paused",
        "_pending",
        "_pending_at",
        "_queue",
        "_request",
        "_seen",
        "_server",
        "_size",
        "_sniffed",
        "_spill",
        "_stalled",
        "_starting",
        "_timer",
        "_transport",
        "_upgrade_body",
        "_url",
        "_writing_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # One timer per connection, ticking every `server.tick` seconds (see _tick): no clock
        # is read per request.
        self._timer: asyncio.TimerHandle | None = None
        self._seen = 0  # the request begun at the last tick
        self._open_for = 0.0  # for how long (at least) it has been coming
        self._idle_for = 0.0  # for how long (at least) nothing has been
        self._stalled = 0.0  # for how long (at least) the client has taken none of its answers
        # The request being read.
        self._messages = 0  # requests begun on this connection: tells one from the next
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._length: bytes | None = None  # its Content-Length
        self._expect: bytes | None = None  # and Expect
        self._hosts = 0  # and how many Host fields
        self._header_bytes = 0
        self._head_open = False  # a request's head has begun and not ended
        self._upgrade_body: int | None = None  # body bytes still to come of an Upgrade request
        self._request: Request | None = None
        # The routes are being refreshed before the request's body is read (see _decided).
        self._deciding: asyncio.Future[Response | None] | None = None
        self._body: list[bytes] = []
        self._spill: bytearray | None = None  # a body of many small pieces, gathered
        self._size = 0
        self._framing = 0  # bytes of its body read with nothing else (chunk framing included)
        self._framed = 0  # ... counted for this request
        self._keep = True
        # Requests read and waiting for the one being answered (pipelining).
        self._queue: deque[_Item] = deque()
        self._busy = False  # an answer is being produced
        self._starting = False  # ... by the application, called from _start
        # What holds the input: reading is paused while any of these is so.
        self._full = False  # the queue is (nearly) full, until it is down to _RESUME_AT
        self._writing_paused = False  # the client is not taking the answers
        self._pending = b""  # read and not yet parsed: _pending[_pending_at:]
        self._pending_at = 0
        self._paused = False  # reading is paused (the transport's state)
        self._done = False  # an error ended the connection: the rest of the input is ignored
        self._linger = False  # ... and the connection closes only after the client stops sending
        self._lingering = False  # the last answer went out: reading on, to drop the rest
        self._ended = False  # a last answer (connection: close) was written: nothing more is
        # Until the first bytes tell: an HTTP/2 client with prior knowledge opens with PREFACE.
        self._fresh = True
        self._sniffed = b""

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not its subclasses
        if not self._server.admit(self):
            # Over the connection cap: refused at once, before anything is read.
            self._fresh = False
            self._done = self._ended = True
            self._transport.write(_OVER_CAPACITY)
            self._transport.close()
            self._transport = None
            return
        self._timer = self._loop.call_later(self._server.tick, self._tick)
        if self._server.tls:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
                self._to_http2(b"")

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._request is not None and not self._done:
            self._app.disconnected(self._request.path, self._request.headers)
        self._transport = None  # answers still to come are dropped; their events stay stored
        self._pending = b""
        self._deciding = None
        self._queue.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._stalled = -self._server.tick  # counted from the next tick (see _tick)
        self._flow()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._pump()

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
        if self._pending:  # reading is paused, but a transport may hand over what it has
            self._pending = self._pending[self._pending_at :] + data
            self._pending_at = 0
            return
        if len(data) <= _WHOLE and not self._queue and self._upgrade_body is None:
            # Too short to complete more requests than there are places: all in one piece.
            taken = self._parse(data)
            if taken < len(data):  # an Upgrade request's head ended: its body follows
                self._feed(data, taken)
            if self._queue and len(self._queue) >= MAX_PIPELINED - 1:
                self._full = True
                self._flow()
        else:
            self._feed(data, 0)

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

    # -- the input ----------------------------------------------------------------------------

    def _feed(self, data: bytes, at: int) -> None:
        """Parse `data` from `at`, as far as the bounds let it in; the rest waits in `_pending`
        (reading paused), or is dropped once the connection is done.

        No more requests may complete than the queue has places for, and the parser cannot be
        stopped midway: so `data` goes to it whole only when it is too short to hold more
        requests than that; else a request at a time (to the end of its head, then to the end
        of a body of known length), until the rest is short enough."""
        size = len(data)
        view: memoryview | None = None
        while at < size:
            if self._held():
                if not self._done:
                    self._pending, self._pending_at = data, at
                    self._flow()
                return
            if self._upgrade_body is not None:
                at = self._read_upgrade_body(data, at)
                continue
            # A piece completes at most the request begun before it and one per
            # _SHORTEST_REQUEST bytes.
            places = MAX_PIPELINED - 1 - len(self._queue)
            end = size if size - at <= _SHORTEST_REQUEST * places else self._request_end(data, at)
            if at == 0 and end == size:
                at = self._parse(data)
            else:
                if view is None:
                    view = memoryview(data)
                at += self._parse(view[at:end])
            if len(self._queue) >= MAX_PIPELINED - 1:  # the next piece may complete two
                self._full = True
        if self._full:
            self._flow()

    def _request_end(self, data: bytes, at: int) -> int:
        """Where the request being read ends in `data`, if its body's length is known; else
        just past the next end of a head (the piece completes two requests at the most)."""
        length = self._length
        if self._request is not None and length is not None and length.isdigit():  # not a trailer
            left = int(length) - self._size
            if left > 0:
                return min(len(data), at + left)
        end = data.find(_HEAD_END, at)
        return len(data) if end < 0 else end + len(_HEAD_END)

    def _parse(self, piece: bytes | memoryview) -> int:
        """Feed the parser one piece; how many of its bytes it took (all, but at an Upgrade)."""
        messages = self._messages
        try:
            self._parser.feed_data(piece)
        except httptools.HttpParserUpgrade as exc:
            if self._upgrade_body is None:
                self._end(_error(400, "protocol upgrades are not supported; send HTTP/1.1 requests"))
                return len(piece)
            # The parser stops at the end of an Upgrade request's head: the body is read by
            # _read_upgrade_body, and a new parser takes the next request.
            self._parser = httptools.HttpRequestParser(self)
            if self._upgrade_body == 0:
                self._upgrade_body = None
                self._complete()
            return int(exc.args[0])
        except httptools.HttpParserError as exc:
            self._end(_error(400, f"malformed HTTP request: {exc}"))
            return len(piece)
        if messages == self._messages and not self._done:
            # One request all along: the whole piece was its head (the parser keeps a field
            # until it ends, so one that never ends is cut off here), or its body (and perhaps
            # the end of its head, which the framing limit leaves room for).
            if self._head_open:
                self._count_header_bytes(len(piece))
            elif self._request is not None:
                if self._framed != messages:
                    self._framed, self._framing = messages, 0
                self._framing += len(piece)
                if self._framing > 2 * self._app.max_body + MAX_HEADER_BYTES:
                    self._end(self._app.too_large(self._request.path, self._request.headers))
                elif len(self._body) > 64:
                    self._gather()
        return len(piece)

    def _read_upgrade_body(self, data: bytes, at: int) -> int:
        assert self._upgrade_body is not None
        taken = min(self._upgrade_body, len(data) - at)
        self._upgrade_body -= taken
        if taken:
            self.on_body(data[at : at + taken])
        if self._upgrade_body == 0 and not self._done:
            self._upgrade_body = None
            self._complete()
        return at + taken

    def _flow(self) -> None:
        """Pause reading while anything holds the input, resume it when nothing does."""
        transport = self._transport
        if transport is None:
            return
        pause = not self._lingering and (bool(self._pending) or self._held())
        if pause == self._paused:
            return
        self._paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _held(self) -> bool:
        """Whether the input must wait: the queue is full, the client takes none of its
        answers, the routes are being refreshed for the request being read, or it is done."""
        return self._full or self._writing_paused or self._deciding is not None or self._done

    def _pump(self) -> None:
        """Parse what waits unparsed, as far as the bounds allow; read on if nothing holds.
        Called from the event loop only (an answer given later, the client reading again),
        never while the parser is being fed."""
        if self._full and len(self._queue) <= _RESUME_AT:
            self._full = False
        if self._pending and not self._held():
            data, at = self._pending, self._pending_at
            self._pending, self._pending_at = b"", 0
            self._feed(data, at)
        if self._paused:
            self._flow()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._messages += 1
        self._head_open = True
        self._url = b""
        self._headers = []
        self._length = None
        self._expect = None
        self._hosts = 0
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
        self._headers.append((name, value))  # after the head, to _TRAILERS: counted, not kept
        if name == b"content-length":  # the parser refuses a second one that differs
            self._length = value
        elif name == b"host":
            self._hosts += 1
        elif name == b"expect":
            self._expect = value
        self._header_bytes += len(name) + len(value) + _FIELD_COST
        if self._header_bytes > MAX_HEADER_BYTES:  # as _count_header_bytes, inline: once per field
            self._count_header_bytes(0)

    def _count_header_bytes(self, size: int) -> None:
        # Checked as they arrive, so header fields that never end cannot fill the memory.
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._end(
                _error(
                    431,
                    f"request line and header fields larger than {MAX_HEADER_BYTES} bytes, each field "
                    f"counting {_FIELD_COST} bytes more than its length (so {MAX_HEADER_FIELDS} header "
                    "fields at the most)",
                )
            )

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
        if self._hosts != 1 and (self._hosts > 1 or parser.get_http_version() != "1.0"):
            # RFC 9112 section 3.2: an HTTP/1.1 request has one Host, any request at most one.
            self._end(_error(400, "a request must have one Host header field"))
            return
        path = url.path.decode("latin-1") if url.path else "/"
        if "%" in path:
            path = unquote(path)
        headers = self._headers
        self._headers = _TRAILERS
        self._request = request = Request(
            parser.get_method().decode("latin-1"), path, headers, query=url.query or b""
        )
        self._keep = parser.should_keep_alive()
        length = self._length
        if declared_over(length, self._app.max_body):
            self._end(self._app.too_large(path, headers))  # decided before reading the body
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
        if (length is not None and len(length) > 4 and int(length) > _SMALL_BODY) or (
            length is None and header_value(headers, b"transfer-encoding") is not None
        ):
            # A large body (or one of unknown size) follows: not read for a path nothing
            # serves, nor held for more than one refresh of the routes (the input waits
            # meanwhile). A smaller one is read, and `handle` decides.
            decision = self._app.unrouted(request)
            if isinstance(decision, Response):
                self._end(decision)
                return
            if decision is not None:
                self._deciding = decision
                decision.add_done_callback(partial(self._decided, request))
                self._flow()
                return
        self._admit(request)

    def _admit(self, request: Request) -> None:
        """Read on for `request`: refused from its head if authentication says so, else told to
        send its body if it waits for 100 Continue."""
        refusal = self._app.refused(request)  # decided before reading the body
        if refusal is not None:
            self._end(refusal)
            return
        expect = self._expect
        if (
            expect is not None
            and expect.lower() == b"100-continue"
            and not self._busy
            and self._parser.get_http_version() == "1.1"
        ):
            assert self._transport is not None
            self._transport.write(_CONTINUE)

    def _decided(self, request: Request, decided: asyncio.Future[Response | None]) -> None:
        """Whether the body of `request`, to a path unknown at first, is read (after a refresh
        of the routes): else its 404, and the connection closes."""
        if decided is not self._deciding:
            return  # the connection ended meanwhile
        self._deciding = None
        if self._transport is None or self._done:
            return
        answer = decided.result()
        if request is self._request:  # else it came whole with its head: `handle` decides
            if answer is not None:
                self._end(answer)
                return
            self._admit(request)
        self._pump()

    def on_body(self, body: bytes) -> None:
        if self._done or self._request is None:
            return
        self._size += len(body)
        if self._size > self._app.max_body:
            self._end(self._app.too_large(self._request.path, self._request.headers))
            return
        self._body.append(body)

    def on_chunk_header(self) -> None:
        if len(self._body) > 64:
            self._gather()

    def _gather(self) -> None:
        """A body of many small pieces (chunks, or reads) goes into one buffer, not an object
        for each piece."""
        if self._spill is None:
            self._spill = bytearray()
        self._spill += b"".join(self._body)
        self._body.clear()

    def on_message_complete(self) -> None:
        if self._upgrade_body is None:
            self._complete()

    def _complete(self) -> None:
        request = self._request
        if self._done or request is None:
            return
        self._request = None
        body = self._body
        if self._spill is not None:
            self._spill += b"".join(body)
            request.body = bytes(self._spill)
            self._spill = None
        else:
            request.body = body[0] if len(body) == 1 else b"".join(body)
        item = (request, self._keep, request.method == "HEAD")
        if self._busy or self._queue:
            self._queue.append(item)
        else:
            self._start(item)

    # -- answering ----------------------------------------------------------------------------

    def _start(self, item: _Item) -> None:
        request, keep, head = item
        self._busy = True
        if isinstance(request, Response):
            self._respond(keep, head, request)
            return
        self._starting = True
        try:
            answer = self._app.handle(request, partial(self._answer, keep, head))
        except Exception:
            log.exception("handling %s %s", request.method, request.path)
            answer = _error(500, "internal error; the event was not stored")
        self._starting = False
        if answer is not None:
            self._respond(keep, head, answer)

    def _answer(self, keep: bool, head: bool, response: Response) -> None:
        """The application's answer, given later: written, and the queue goes on."""
        self._respond(keep, head, response)
        if not self._starting and (self._queue or self._paused):  # else _start's caller goes on
            self._next()

    def _next(self) -> None:
        """Start the queued requests in turn until one is answered later; then read on."""
        queue = self._queue
        while queue and not self._busy and not self._ended:
            self._start(queue.popleft())
        self._pump()

    def _respond(self, keep: bool, head: bool, response: Response) -> None:
        self._busy = False
        transport = self._transport
        if transport is None or self._ended or transport.is_closing():
            return
        keep = keep and not self._server.stopping
        transport.write(_serialize(response, keep, head))
        if keep:
            return
        self._ended = self._done = True
        self._queue.clear()  # read after a last request: never handled, so nothing is lost
        self._pending = b""
        if self._linger and transport.can_write_eof():
            # Lingering close: the client may still be sending what was refused. Closing now
            # would answer its next bytes with a reset, and a reset can discard the answer
            # before the client reads it. So stop writing, read and drop for a while, close.
            transport.write_eof()
            self._lingering = True
            self._flow()
            self._loop.call_later(_LINGER_SECONDS, self._close)
        else:
            self._close()

    def _close(self) -> None:
        """Close once what is written has gone out; abort if the client takes none of it."""
        transport = self._transport
        if transport is None:
            return
        transport.close()
        if transport.get_write_buffer_size():
            self._loop.call_later(self._server.body_timeout, transport.abort)

    def _end(self, response: Response) -> None:
        """Answer `response` (after the answers owed before it) and close: the input is unusable."""
        if self._done:
            return  # the first refusal is the answer; whatever the input did next is dropped
        self._done = True
        self._linger = True
        self._request = None
        self._deciding = None
        self._pending = b""
        item = (response, False, False)
        if self._busy or self._queue:
            self._queue.append(item)
        else:
            self._start(item)
        self._flow()

    # -- deadlines and shutdown ---------------------------------------------------------------

    def _tick(self) -> None:
        """Every `server.tick` seconds: a client that has taken none of its answers for
        `body_timeout` is dropped; a request whose head is not whole `head_timeout` after its
        first byte, or that is not whole `body_timeout` after that, is answered 408 (nothing of
        it is stored); a connection idle for `keep_alive` is closed, as keep-alive allows.

        Each time is counted in ticks from the first tick that sees its state, so it is never
        over before its time, and at most a tick late. The request clocks stop while the
        server holds the input (a full queue, answers not taken, or the connection done)."""
        self._timer = None
        transport = self._transport
        if transport is None or self._ended:
            return  # closing: _close bounds the rest
        server = self._server
        tick = server.tick
        if self._writing_paused:
            self._stalled += tick
            if self._stalled >= server.body_timeout:
                transport.abort()
                return
            self._idle_for = -tick
        elif self._paused:
            self._seen = -1  # the request clocks begin again when reading does
            self._idle_for = -tick
        elif self._head_open or self._request is not None:
            if self._messages != self._seen:
                self._seen = self._messages
                self._open_for = 0.0
            else:
                self._open_for += tick
            limit = server.head_timeout if self._head_open else server.head_timeout + server.body_timeout
            if self._open_for >= limit:
                self._end(self._app.timed_out(self._request))
                return
            self._idle_for = -tick
        elif self._busy or self._queue:
            self._idle_for = -tick
        else:
            if self._messages != self._seen:
                self._seen = self._messages
                self._idle_for = 0.0
            else:
                self._idle_for += tick
            if self._idle_for >= server.keep_alive:
                transport.close()
                return
        self._timer = self._loop.call_later(tick, self._tick)

    def stop(self) -> None:
        """The server is stopping: close now if idle, else after the answers in progress."""
        if self._request is None and not self._busy and not self._queue and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def backlog(self) -> tuple[int, int, int]:
        """Requests waiting, bytes read and not parsed, bytes written and not yet taken."""
        transport = self._transport
        unsent = transport.get_write_buffer_size() if transport is not None else 0
        return len(self._queue), len(self._pending) - self._pending_at, unsent
