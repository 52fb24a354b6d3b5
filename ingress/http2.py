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
- received data is acknowledged as it arrives (flow control is the client's problem only while
  a stream's body is within the limit);
- answers go out as Kafka acknowledges, in any order across streams; a body larger than the
  peer's window waits for WINDOW_UPDATE;
- a stream the client resets before its body is whole is counted as disconnected (499) and
  nothing of it is stored; one reset after is answered into the void (its events are stored);
- idle connections close after `keep_alive` seconds with GOAWAY; graceful shutdown refuses new
  streams (REFUSED_STREAM, which clients retry elsewhere), answers those in progress, then sends
  GOAWAY and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from ingress.app import Request, Response, declared_over, header_value

if TYPE_CHECKING:
    from ingress.http import HttpServer

__all__ = ["PREFACE", "Http2Connection"]

log = logging.getLogger(__name__)

# How an HTTP/2 connection with prior knowledge begins (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Stream:
    __slots__ = ("body", "request", "size", "state")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.body: list[bytes] = []
        self.size = 0
        # "reading" the body, "answering" (handed to the application), "refused" (answered
        # before its body was read; the rest of it is dropped).
        self.state = "reading"


class Http2Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._streams: dict[int, _Stream] = {}
        self._unsent: dict[int, bytes] = {}  # answer bodies waiting for the peer's window
        self._timer: asyncio.TimerHandle | None = None
        self._idle_since = self._loop.time()
        self._stopping = False

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)
        self._h2.initiate_connection()
        self._flush()
        self._timer = self._loop.call_later(self._server.keep_alive, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.closed(self)
        if self._timer is not None:
            self._timer.cancel()
        for stream in self._streams.values():
            if stream.state == "reading":
                self._app.disconnected(stream.request.path, stream.request.headers)
        self._streams.clear()
        self._transport = None  # answers still to come are dropped; their events stay stored

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("HTTP/2 protocol error from a client: %s", exc)
            self._flush()  # the GOAWAY h2 prepared
            if self._transport is not None:
                self._transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._head(event.stream_id, event.headers or [])
            elif isinstance(event, h2.events.DataReceived):
                self._data(event.stream_id, event.data or b"", event.flow_controlled_length or 0)
            elif isinstance(event, h2.events.StreamEnded):
                self._ended(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._reset(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self._send_unsent()
            elif isinstance(event, h2.events.ConnectionTerminated) and self._transport is not None:
                self._flush()
                self._transport.close()
                return
        self._flush()

    # -- streams ------------------------------------------------------------------------------

    def _head(self, stream_id: int, raw: list[tuple[bytes, bytes]]) -> None:
        """A request's head; its StreamEnded (at once for a request without a body) follows."""
        if self._stopping:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
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
        stream = self._streams[stream_id] = _Stream(request)
        self._idle_since = self._loop.time()
        if declared_over(header_value(headers, b"content-length"), self._app.max_body):
            self._refuse(stream_id, stream, self._app.too_large(path, headers))
            return
        refusal = self._app.refused(request)  # an authentication failure, from the head alone
        if refusal is not None:
            self._refuse(stream_id, stream, refusal)

    def _data(self, stream_id: int, data: bytes, flow_controlled: int) -> None:
        if flow_controlled:
            # Taken off the window at once: a body within the limit is read as fast as it comes.
            self._h2.acknowledge_received_data(flow_controlled, stream_id)
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != "reading":
            return
        stream.size += len(data)
        if stream.size > self._app.max_body:
            self._refuse(stream_id, stream, self._app.too_large(stream.request.path, stream.request.headers))
            return
        stream.body.append(data)

    def _ended(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.state != "reading":
            return
        stream.state = "answering"
        request = stream.request
        request.body = b"".join(stream.body)
        stream.body = []
        try:
            answer = self._app.handle(request, partial(self._answer, stream_id))
        except Exception:
            log.exception("handling %s %s", request.method, request.path)
            answer = Response(500, [(b"content-type", b"application/json")], b'{"error": "internal error"}')
        if answer is not None:
            self._answer(stream_id, answer)

    def _reset(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        self._unsent.pop(stream_id, None)
        if stream is not None and stream.state == "reading":
            self._app.disconnected(stream.request.path, stream.request.headers)
        self._maybe_close()

    def _refuse(self, stream_id: int, stream: _Stream, response: Response) -> None:
        """Answer before the body is read, then tell the client to stop sending it."""
        stream.state = "refused"
        stream.body = []
        self._respond(stream_id, response, head=stream.request.method == "HEAD")
        if stream_id not in self._unsent:
            with contextlib.suppress(h2.exceptions.StreamClosedError):  # the client ended it
                self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        self._streams.pop(stream_id, None)

    # -- answering ----------------------------------------------------------------------------

    def _answer(self, stream_id: int, response: Response) -> None:
        """The application's answer to a stream, now or once Kafka has acknowledged."""
        if self._transport is None or self._transport.is_closing():
            return
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return  # reset by the client meanwhile
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
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return  # the client reset it, or the connection is closing
        if body:
            self._unsent[stream_id] = body
            self._send_unsent()
        self._idle_since = self._loop.time()

    def _send_unsent(self) -> None:
        for stream_id, body in list(self._unsent.items()):
            try:
                window = self._h2.local_flow_control_window(stream_id)
                size = min(window, self._h2.max_outbound_frame_size)
                while body and size > 0:
                    chunk, body = body[:size], body[size:]
                    self._h2.send_data(stream_id, chunk, end_stream=not body)
                    window -= len(chunk)
                    size = min(window, self._h2.max_outbound_frame_size)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                body = b""  # reset meanwhile
            if body:
                self._unsent[stream_id] = body
            else:
                del self._unsent[stream_id]

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- closing ------------------------------------------------------------------------------

    def _busy(self) -> bool:
        return bool(self._streams or self._unsent)

    def _maybe_close(self) -> None:
        if self._stopping and not self._busy():
            self._goaway()

    def _goaway(self) -> None:
        if self._transport is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):  # already closed
            self._h2.close_connection()
        self._flush()
        self._transport.close()

    def _idle(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        keep_alive = self._server.keep_alive
        waited = self._loop.time() - self._idle_since
        if self._busy() or waited < keep_alive:
            self._timer = self._loop.call_later(
                keep_alive if self._busy() else keep_alive - waited, self._idle
            )
            return
        self._goaway()

    def stop(self) -> None:
        """The server is stopping: no new streams; GOAWAY once those in progress are answered."""
        self._stopping = True
        self._maybe_close()
        self._flush()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
