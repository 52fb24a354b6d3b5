"""Raw HTTP/2 frames for tests that abuse the ingress: a client that writes exactly the frames a
test builds (hyperframe, with HPACK from hpack, both under the h2 library), in any number and
order, with none of a well-behaved client's restraint, and reads back the server's frames.

A well-behaved client (the h2 library's own connection) refuses to send past a window or after a
GOAWAY; the attacks this is for do exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable

import hpack
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from ingress.http2 import PREFACE

__all__ = ["EVENT", "RawH2"]

# A valid binary-mode CloudEvent's head, without the pseudo-header fields.
EVENT = [
    ("ce-id", "raw-1"),
    ("ce-specversion", "1.0"),
    ("ce-type", "greeting"),
    ("ce-source", "raw"),
    ("content-type", "application/json"),
]


class RawH2:
    """One connection, its HPACK state, and what the server sent on it so far."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []  # every frame the server sent, in order
        self.status: dict[int, int] = {}  # the :status of each stream answered
        self.eof = False
        self.aborted = False  # the connection ended in a TCP reset, not a close
        self._input = b""

    @classmethod
    async def open(cls, port: int, *, receive_buffer: int | None = None) -> RawH2:
        """Connect, send the preface and an empty SETTINGS, and acknowledge the server's (so
        its settings are in force from the first stream on). `receive_buffer` shrinks the
        socket's, for a client that should stop taking bytes soon."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        client = cls(*await asyncio.open_connection(sock=sock))
        client.write(PREFACE + SettingsFrame(0).serialize())
        await client.read_until(lambda: any(isinstance(f, SettingsFrame) for f in client.frames))
        client.write(SettingsFrame(0, flags=["ACK"]).serialize())
        return client

    # -- writing ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the socket took what was written; False if the server stopped reading
        (or closed) first."""
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except (TimeoutError, ConnectionError):
            return False
        return True

    def head(
        self,
        stream_id: int,
        *,
        path: str = "/ns/default",
        end: bool = True,
        extra: Iterable[tuple[str, str]] = EVENT,
    ) -> bytes:
        """A request's HEADERS frame (POST to `path`), ending the stream if `end`."""
        block = self.encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "ingress"), *extra]
        )
        return self.headers(stream_id, block, end=end)

    @staticmethod
    def headers(stream_id: int, block: bytes, *, end: bool = True) -> bytes:
        """A HEADERS frame carrying an encoded header block: once a head has gone out, the
        same head again is a few bytes that leave the HPACK table as it is, so a test can send
        them on any number of streams without encoding each."""
        flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
        return HeadersFrame(stream_id, data=block, flags=flags).serialize()

    @staticmethod
    def data(stream_id: int, payload: bytes, *, end: bool = False) -> bytes:
        return DataFrame(stream_id, data=payload, flags=["END_STREAM"] if end else []).serialize()

    @staticmethod
    def reset(stream_id: int) -> bytes:
        return RstStreamFrame(stream_id, error_code=8).serialize()  # CANCEL, as clients send

    # -- reading ------------------------------------------------------------------------------

    async def read_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Read frames until `done()` (True), the server closes (False), or `timeout`."""
        async with asyncio.timeout(timeout):
            while not done():
                while len(self._input) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(self._input[:9]))
                    if len(self._input) < 9 + length:
                        break
                    frame.parse_body(memoryview(self._input[9 : 9 + length]))
                    self._input = self._input[9 + length :]
                    self._took(frame)
                    if done():
                        return True
                if self.eof:
                    return False
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    data = b""
                    self.aborted = True
                if not data:
                    self.eof = True
                self._input += data
            return True

    async def quiet(self, seconds: float) -> None:
        """Read whatever the server sends until it has said nothing for `seconds`."""
        before = -1
        while before != len(self.frames) and not self.eof:
            before = len(self.frames)
            with contextlib.suppress(TimeoutError):
                await self.read_until(lambda: False, timeout=seconds)

    async def goaway(self, timeout: float = 10.0) -> GoAwayFrame | None:
        """The server's GOAWAY, once it has closed the connection (None if it sent none, or
        has not closed within `timeout`)."""
        with contextlib.suppress(TimeoutError):
            await self.read_until(lambda: False, timeout=timeout)
        if not self.eof:
            return None
        return next((f for f in self.frames if isinstance(f, GoAwayFrame)), None)

    def window_updates(self, stream_id: int) -> int:
        return sum(
            f.window_increment
            for f in self.frames
            if isinstance(f, WindowUpdateFrame) and f.stream_id == stream_id
        )

    def _took(self, frame: Frame) -> None:
        self.frames.append(frame)
        if isinstance(frame, HeadersFrame):
            fields = dict(self.decoder.decode(frame.data, raw=True))
            if b":status" in fields:
                self.status[frame.stream_id] = int(fields[b":status"])

    def close(self) -> None:
        self.writer.close()
