"""HTTP/2 for the ingress (the CloudEvents HTTP binding applies to HTTP/2 unchanged, CEH-16).

Both ways clients speak it: cleartext with prior knowledge (h2c: the connection opens with the
HTTP/2 preface, which `ingress.http` recognises and hands over here) and over TLS when ALPN
selects `h2`. The HTTP/1.1 `Upgrade: h2c` dance is declined, as a server may (answered in
HTTP/1.1). The h2 library keeps the protocol's state (frames, HPACK, flow control, stream
states); this protocol turns each stream into the `Request` the HTTP/1.1 server would have made
and hands it to the same application, so every status code, limit and metric is the same:
- 413 from `content-length` before the body is read, or as soon as a body passes the limit;
  401/403 from the head alone when authentication is on; the stream is then reset (NO_ERROR)
  so the client stops sending, and the connection goes on;
- answers go out as Kafka acknowledges, in any order across streams; a body larger than the
  peer's window waits for WINDOW_UPDATE;
- a stream the client resets before its body is whole, or in the same read as its end, is
  counted as disconnected (499) and nothing of it is stored; one reset later is answered into
  the void (its events are stored);
- idle connections close after `keep_alive` seconds with GOAWAY; graceful shutdown refuses new
  streams (REFUSED_STREAM, which clients retry elsewhere), answers those in progress, then sends
  GOAWAY and closes.

Bounds a client cannot move (`ingress.http2_bounds.Http2Limits`, defaults in brackets):
- flow control grants window only for bodies the server will take (`ReceiveWindows`): a stream
  starts with `stream_window` (16 KiB) and gets more as its body arrives while the connection's
  unfinished bodies stay within a budget (the body limit); past it only the oldest unfinished
  stream gets more, so it finishes and nothing waits on a window forever. Memory for bodies is
  at most max_streams x stream_window + the budget + one body per connection;
- at most `max_streams` (100) streams at once, counting those the client reset while their
  events are being stored: more are refused (REFUSED_STREAM), so resets cannot start more work
  than that (CVE-2023-44487);
- a request not whole `request_seconds` (30 s) after its HEADERS is answered 408 and reset;
- more resets (or refused streams) than 100 per 10 s plus one per two streams opened, or more
  than 1000 frames per 10 s that make no request (PING, SETTINGS, WINDOW_UPDATE nobody waits
  for, PRIORITY, empty DATA, unknown types; one more per stream opened): GOAWAY with
  ENHANCE_YOUR_CALM, and the connection closes;
- write backpressure: while the socket's write buffer is over its high-water mark (a client
  that does not read its answers or its PING acks) nothing more is read or parsed, and whole
  requests wait; an answer that waits `write_stall_seconds` (30 s) for a client that does not
  read is given up: the stream is reset, or the connection closed;
- after a GOAWAY for an error the server reads and drops for `linger_seconds` (2 s) before it
  closes, so the client reads the GOAWAY, not a TCP reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from ingress.app import Request, Response, declared_over, header_value
from ingress.http2_bounds import Budget, ReceiveWindows

if TYPE_CHECKING:
    from ingress.http import HttpServer

__all__ = ["PREFACE", "Http2Connection"]

log = logging.getLogger(__name__)

# How an HTTP/2 connection with prior knowledge begins (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DEFAULT_WINDOW = 65_535  # every window's size before SETTINGS or WINDOW_UPDATE say otherwise
# Input is handed to h2 in pieces of at most this (one frame of the largest default size): h2
# answers a PING or a SETTINGS as it parses it, and decodes every head it parses, so a piece
# bounds what one read makes before the bounds here can act on it.
_PIECE = 16 * 1024
_Codes = h2.errors.ErrorCodes
# Frames that make no request: counted against Http2Limits.idle_frames.
_IDLE_FRAMES = (
    h2.events.PingReceived,
    h2.events.PingAckReceived,
    h2.events.SettingsAcknowledged,
    h2.events.UnknownFrameReceived,
)


class _Stream:
    __slots__ = ("body", "request", "size", "started", "state")

    def __init__(self, request: Request, started: float) -> None:
        self.request = request
        self.started = started
        self.body: list[bytes] = []
        self.size = 0
        # "reading" its body; "ended" (whole, handed to the application once the read that
        # ended it is processed); "answering" (with the application).
        self.state = "reading"


class Http2Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._limits = limits = server.http2
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._streams: dict[int, _Stream] = {}
        # Streams whose request is whole, in order, waiting to be handed to the application:
        # not while the client leaves its answers unread (the write buffer is over its mark).
        self._waiting: deque[int] = deque()
        # Answer bodies waiting for the peer's window, with when they last made progress.
        self._unsent: dict[int, tuple[bytes, float]] = {}
        self._reset_when_sent: set[int] = set()  # refused streams whose client may still send
        self._orphans = 0  # streams the client reset while the application stores their events
        self._windows = ReceiveWindows(limits, self._app.max_body)
        self._resets = Budget(limits.resets, limits.reset_seconds, 0.5)
        self._frames = Budget(limits.idle_frames, limits.frame_seconds, 1.0)
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf
        self._idle_since = self._loop.time()
        self._write_paused_at: float | None = None
        self._unread: bytes | None = None  # input left unparsed while the client does not read
        self._stopping = False
        self._closing = False  # a GOAWAY went out: the rest of the input is dropped

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)
        limits = self._limits
        codes = h2.settings.SettingCodes
        # The server's first SETTINGS frame, through update_settings rather than
        # initiate_connection: so h2 applies these values once the client acknowledges them,
        # and until then holds the client to the defaults it may still be using.
        self._h2.update_settings(
            {
                codes.MAX_CONCURRENT_STREAMS: limits.max_streams,
                codes.INITIAL_WINDOW_SIZE: limits.stream_window,
                codes.MAX_HEADER_LIST_SIZE: self._h2.DEFAULT_MAX_HEADER_LIST_SIZE,
            }
        )
        if limits.connection_window > _DEFAULT_WINDOW:
            self._h2.increment_flow_control_window(limits.connection_window - _DEFAULT_WINDOW)
        self._flush()
        self._arm(self._loop.time() + self._server.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in self._streams.values():
            if stream.state != "answering":
                self._app.disconnected(stream.request.path, stream.request.headers)
        self._streams.clear()
        self._waiting.clear()
        self._unsent.clear()
        self._transport = None  # answers still to come are dropped; their events stay stored

    def pause_writing(self) -> None:
        """The client is not reading: read nothing more from it (no more answers, no more
        acks) until it does, for `write_stall_seconds` at the most."""
        self._write_paused_at = now = self._loop.time()
        if self._transport is not None:
            self._transport.pause_reading()
        self._arm(now + self._limits.write_stall_seconds)

    def resume_writing(self) -> None:
        self._write_paused_at = None
        if self._transport is None:
            return
        self._transport.resume_reading()
        unread, self._unread = self._unread, None
        if unread:
            self._feed(unread)
        self._hand_over_waiting()
        self._flush()

    def held(self) -> int:
        """Bytes this connection holds for its client: unfinished bodies, answers waiting for
        its window, input left unparsed and the socket's write buffer."""
        transport = self._transport
        return (
            self._windows.buffered
            + sum(len(body) for body, _ in self._unsent.values())
            + len(self._unread or b"")
            + (transport.get_write_buffer_size() if transport is not None else 0)
        )

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering after a GOAWAY: read and dropped
        if self._unread is not None:  # paused, but a transport may hand over what it has
            self._unread += data
        elif len(data) <= _PIECE:
            self._receive(data)
        else:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        """Parse `data` a piece at a time; what is left once the client stops reading its
        answers waits in `_unread` until it does."""
        view = memoryview(data)
        for start in range(0, len(data), _PIECE):
            if self._write_paused_at is not None and not self._closing:
                self._unread = data[start:]
                return
            self._receive(view[start : start + _PIECE])

    def _receive(self, data: bytes | memoryview) -> None:
        if self._closing:
            return  # lingering after a GOAWAY: read and dropped
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("HTTP/2 protocol error from a client: %s", exc)
            self._flush()  # the GOAWAY h2 prepared
            self._linger()
            return
        now = self._loop.time()
        with_headers: h2.events.PriorityUpdated | None = None
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                chunk = event.data or b""
                if not chunk and event.stream_ended is None:
                    self._idle_frame(now)
                self._data(event.stream_id, chunk, event.flow_controlled_length or 0, event.stream_ended)
            elif isinstance(event, h2.events.RequestReceived):
                with_headers = event.priority_updated
                self._head(event.stream_id, event.headers or [], now)
            elif isinstance(event, h2.events.StreamEnded):
                self._ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._reset(event.stream_id, now)
            elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                if self._unsent:
                    self._send_unsent(now)  # the window they wait for may be open now
                else:
                    self._idle_frame(now)
            elif isinstance(event, h2.events.PriorityUpdated):
                if event is not with_headers:  # a PRIORITY frame, not a HEADERS frame's part
                    self._idle_frame(now)
            elif isinstance(event, _IDLE_FRAMES):
                self._idle_frame(now)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._flush()
                self._linger()
            if self._closing:
                return
        # Requests are handed over once the whole read is processed, so a stream reset in the
        # same read as its end starts no work.
        self._hand_over_waiting()
        self._flush()

    # -- streams ------------------------------------------------------------------------------

    def _head(self, stream_id: int, raw: list[tuple[bytes, bytes]], now: float) -> None:
        """A request's head; its StreamEnded (at once for a request without a body) follows."""
        if self._stopping:
            self._reset_stream(stream_id, _Codes.REFUSED_STREAM)
            return
        self._resets.earn(now)
        self._frames.earn(now)
        if len(self._streams) + self._orphans >= self._limits.max_streams:
            # Over the limit only by counting streams reset while the application stores their
            # events (h2 refuses the rest): refused, and counted as a reset.
            self._reset_stream(stream_id, _Codes.REFUSED_STREAM)
            if not self._resets.spend(now):
                self._calm("too many streams reset or refused")
            return
        method, target, authority = b"", b"/", None
        headers: list[tuple[bytes, bytes]] = []
        for name, value in raw:
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
            elif not name.startswith(b":"):
                headers.append((name, value))
        if authority is not None and header_value(headers, b"host") is None:
            headers.insert(0, (b"host", authority))  # for the Knative host form of a Channel
        raw_path, _, query = target.partition(b"?")
        path = raw_path.decode("latin-1") or "/"
        if "%" in path:
            path = unquote(path)
        request = Request(method.decode("latin-1"), path, headers, query=query)
        stream = self._streams[stream_id] = _Stream(request, now)
        self._windows.open(stream_id)
        self._idle_since = now
        self._arm(now + self._limits.request_seconds)
        if declared_over(header_value(headers, b"content-length"), self._app.max_body):
            self._refuse(stream_id, stream, self._app.too_large(path, headers))
            return
        refusal = self._app.refused(request)  # an authentication failure, from the head alone
        if refusal is not None:
            self._refuse(stream_id, stream, refusal)

    def _data(
        self, stream_id: int, data: bytes, flow_controlled: int, ending: h2.events.StreamEnded | None
    ) -> None:
        self._grant(self._windows.connection(flow_controlled), None)
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != "reading":
            return
        if stream.size + len(data) > self._app.max_body:
            self._refuse(stream_id, stream, self._app.too_large(stream.request.path, stream.request.headers))
            return
        stream.body.append(data)
        stream.size += len(data)
        window = self._windows.received(stream_id, len(data), flow_controlled, ending=ending is not None)
        self._grant(window, stream_id)

    def _grant(self, window: int, stream_id: int | None) -> None:
        if window:
            with contextlib.suppress(h2.exceptions.ProtocolError, KeyError):  # closed meanwhile
                self._h2.increment_flow_control_window(window, stream_id)

    def _done_reading(self, stream_id: int) -> None:
        """A stream's body is whole or given up: streams that waited for it may get window."""
        for waiting, window in self._windows.done(stream_id):
            self._grant(window, waiting)

    def _ended(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != "reading":
            return
        stream.state = "ended"
        self._done_reading(stream_id)
        self._waiting.append(stream_id)

    def _hand_over_waiting(self) -> None:
        """Hand whole requests to the application, until the client stops reading answers:
        the rest wait (and stay open streams, so it cannot open more than max_streams)."""
        waiting = self._waiting
        while waiting and self._write_paused_at is None and not self._closing:
            stream_id = waiting.popleft()
            stream = self._streams.get(stream_id)
            if stream is not None and stream.state == "ended":  # else reset meanwhile
                self._hand_over(stream_id, stream)

    def _hand_over(self, stream_id: int, stream: _Stream) -> None:
        stream.state = "answering"
        request = stream.request
        body = stream.body
        request.body = body[0] if len(body) == 1 else b"".join(body)
        stream.body = []
        try:
            answer = self._app.handle(request, partial(self._answer, stream_id))
        except Exception:
            log.exception("handling %s %s", request.method, request.path)
            answer = Response(500, [(b"content-type", b"application/json")], b'{"error": "internal error"}')
        if answer is not None:
            self._answer(stream_id, answer)

    def _reset(self, stream_id: int, now: float) -> None:
        stream = self._streams.pop(stream_id, None)
        self._unsent.pop(stream_id, None)
        if stream is not None:
            if stream.state == "answering":
                self._orphans += 1  # still holds a place until the application answers
            else:
                if stream.state == "reading":
                    self._done_reading(stream_id)
                self._app.disconnected(stream.request.path, stream.request.headers)
        if not self._resets.spend(now):
            self._calm("too many streams reset")
            return
        self._maybe_close()

    def _refuse(self, stream_id: int, stream: _Stream, response: Response) -> None:
        """Answer before the body is read, then tell the client to stop sending it."""
        del self._streams[stream_id]
        reading = stream.state == "reading"
        stream.state = "refused"
        if reading:
            self._done_reading(stream_id)
        stream.body = []
        self._respond(stream_id, response, head=stream.request.method == "HEAD")
        if stream_id in self._unsent:
            self._reset_when_sent.add(stream_id)
        else:
            self._reset_stream(stream_id, _Codes.NO_ERROR)

    def _reset_stream(self, stream_id: int, code: _Codes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):  # the client ended or reset it
            self._h2.reset_stream(stream_id, code)

    # -- answering ----------------------------------------------------------------------------

    def _answer(self, stream_id: int, response: Response) -> None:
        """The application's answer to a stream, now or once Kafka has acknowledged."""
        if self._transport is None or self._closing:
            return
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            self._orphans -= 1  # reset by the client meanwhile: its place is free now
            return
        self._respond(stream_id, response, head=stream.request.method == "HEAD")
        self._flush()
        self._maybe_close()

    def _respond(self, stream_id: int, response: Response, *, head: bool = False) -> None:
        body = response.body
        headers = [(b":status", b"%d" % response.status), *response.headers]
        headers.append((b"content-length", b"%d" % len(body)))
        if head:
            body = b""  # a HEAD answer has the length of the body it does not carry
        try:
            self._h2.send_headers(stream_id, headers, end_stream=not body)
        except h2.exceptions.ProtocolError:
            return  # the client reset it, or the connection is closing
        now = self._loop.time()
        if body:
            self._unsent[stream_id] = (body, now)
            self._send_unsent(now)
            if self._unsent:
                self._arm(now + self._limits.write_stall_seconds)
        self._idle_since = now

    def _send_unsent(self, now: float) -> None:
        for stream_id, (body, since) in list(self._unsent.items()):
            left = body
            try:
                window = self._h2.local_flow_control_window(stream_id)
                size = min(window, self._h2.max_outbound_frame_size)
                while left and size > 0:
                    chunk, left = left[:size], left[size:]
                    self._h2.send_data(stream_id, chunk, end_stream=not left)
                    window -= len(chunk)
                    size = min(window, self._h2.max_outbound_frame_size)
            except h2.exceptions.ProtocolError:
                left = b""  # reset meanwhile
            if left:
                self._unsent[stream_id] = (left, now if len(left) < len(body) else since)
                continue
            del self._unsent[stream_id]
            if stream_id in self._reset_when_sent:
                self._reset_when_sent.discard(stream_id)
                self._reset_stream(stream_id, _Codes.NO_ERROR)

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- bounds -------------------------------------------------------------------------------

    def _idle_frame(self, now: float) -> None:
        if not self._frames.spend(now):
            self._calm("too many frames without a request (PING, SETTINGS, WINDOW_UPDATE, ...)")

    def _calm(self, why: str) -> None:
        """GOAWAY with ENHANCE_YOUR_CALM, and close: the client floods."""
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        log.info("closing an HTTP/2 connection from %s: %s", peer, why)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.close_connection(error_code=_Codes.ENHANCE_YOUR_CALM)
        self._flush()
        self._linger()

    def _arm(self, when: float) -> None:
        """Have `_tick` run at `when`, unless it runs sooner already."""
        if when >= self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._due = when
        self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        """One timer per connection: requests not whole in time, answers nobody reads, idle."""
        self._timer = None
        self._due = math.inf
        transport = self._transport
        if transport is None or self._closing:
            return
        limits = self._limits
        now = self._loop.time()
        keep_alive = self._server.keep_alive
        due = now + keep_alive
        late: list[tuple[int, _Stream]] = []
        for stream_id, stream in self._streams.items():  # in the order they began
            if stream.state != "reading":
                continue
            if stream.started + limits.request_seconds > now:
                due = min(due, stream.started + limits.request_seconds)
                break
            late.append((stream_id, stream))
        for stream_id, stream in late:
            self._refuse(stream_id, stream, self._app.timed_out(stream.request))
        for stream_id, (_, since) in list(self._unsent.items()):
            if since + limits.write_stall_seconds <= now:
                del self._unsent[stream_id]  # the client does not take its answer: given up
                self._reset_when_sent.discard(stream_id)
                self._reset_stream(stream_id, _Codes.CANCEL)
            else:
                due = min(due, since + limits.write_stall_seconds)
        if self._write_paused_at is not None:
            if self._write_paused_at + limits.write_stall_seconds <= now:
                log.info("closing an HTTP/2 connection that does not read its answers")
                transport.abort()
                return
            due = min(due, self._write_paused_at + limits.write_stall_seconds)
        self._flush()
        if not self._busy():
            if self._idle_since + keep_alive <= now:
                self._goaway()
                return
            due = min(due, self._idle_since + keep_alive)
        self._maybe_close()
        self._arm(due)

    # -- closing ------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._streams or self._unsent)

    def _maybe_close(self) -> None:
        if self._stopping and not self._busy():
            self._goaway()

    def _goaway(self) -> None:
        if self._transport is None or self._closing:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed
            self._h2.close_connection()
        self._flush()
        self._linger()

    def _linger(self) -> None:
        """Close once the client has read what was written: stop writing, read and drop what
        it still sends for a while (closing with its bytes unread would send a TCP reset, which
        can discard the GOAWAY before the client reads it), then close."""
        self._closing = True
        self._unread = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():  # TLS: its close_notify ends the stream
            transport.close()
            return
        try:
            transport.write_eof()
        except OSError:  # the client has gone already
            transport.abort()
            return
        transport.resume_reading()
        self._loop.call_later(self._limits.linger_seconds, self._close_now)

    def _close_now(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.abort()  # the client never read it: waiting would hold the socket forever
        else:
            transport.close()

    def stop(self) -> None:
        """The server is stopping: no new streams; GOAWAY once those in progress are answered."""
        self._stopping = True
        self._maybe_close()
        self._flush()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
