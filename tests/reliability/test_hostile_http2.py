"""Hostile clients against the ingress's own HTTP/2 server, in raw frames on loopback. Each test
is a way one unauthenticated client used to hold or grow the server, and each failed before the
bounds it checks (ingress.http2, ingress.http2_bounds):

- stalled streams: 100 streams that each send a large body and never end it used to be granted
  window for all of it at once (about 100 bodies held), were never answered and kept the
  connection open for good; now the server grants window only within a budget, answers each
  408 at its deadline, and closes the connection once idle;
- many large bodies at once all still arrive (the budget feeds the oldest stream first);
- rapid reset (CVE-2023-44487): HEADERS and RST_STREAM 20,000 times used to store each event
  and fill the global in-flight limit, so every other client got 429; now the server tells the
  client ENHANCE_YOUR_CALM and closes, having started no more work than one connection's
  streams may, and another client is served;
- floods of PING, SETTINGS, WINDOW_UPDATE, PRIORITY, empty DATA and unknown frames used to be
  answered without end; now they end in ENHANCE_YOUR_CALM;
- a client that sends and never reads used to have every answer buffered; now the server
  stops reading it and drops it.

The app behind the server is the real IngressApp with an in-memory sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from hyperframe.frame import (
    DataFrame,
    ExtensionFrame,
    PingFrame,
    PriorityFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from channel.embedded import free_port
from channel.events import KafkaRecord
from channel.producer import Done
from channel.settings import Settings
from ingress.app import IngressApp
from ingress.http import HttpServer
from ingress.http2 import Http2Connection
from ingress.http2_bounds import Http2Limits
from ingress.routing import Route
from support.h2frames import RawH2
from support.memory_sink import MemoryEventSink

pytestmark = [pytest.mark.reliability]

MAX_BODY = 256 * 1024
ENHANCE_YOUR_CALM = 11


class HeldSink(MemoryEventSink):
    """Kafka that does not acknowledge until `release()`: requests stay in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Done] = []

    def submit(self, topic: str, records: Sequence[KafkaRecord], done: Done) -> None:
        self.topics.setdefault(topic, []).extend(records)
        self.held.append(done)

    def release(self) -> None:
        for done in self.held:
            done(None)


@contextlib.asynccontextmanager
async def serving(
    sink: MemoryEventSink, *, max_in_flight: int = 4096, keep_alive: float = 75.0, limits: Http2Limits
) -> AsyncIterator[HttpServer]:
    settings = Settings(ingress_max_body_bytes=MAX_BODY, ingress_max_in_flight=max_in_flight)
    app = IngressApp(settings, sink, ready=lambda: True)
    app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic")}
    server = HttpServer(app, "127.0.0.1", free_port(), keep_alive=keep_alive, http2=limits)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.shutdown()
        await task


async def until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def send_bodies(
    client: RawH2, sizes: dict[int, int], *, end: bool, seconds: float, most: float = math.inf
) -> int:
    """Send each stream (already opened) its body of `sizes` bytes, as far as the server's
    windows let, ending the streams if `end`; stop when all is sent, or the server has granted
    no more window for a second, or more than `most` bytes are sent, or after `seconds`. The
    bytes sent."""
    settings = next(f for f in client.frames if isinstance(f, SettingsFrame) and "ACK" not in f.flags)
    initial = settings.settings.get(SettingsFrame.INITIAL_WINDOW_SIZE, 65_535)
    windows = dict.fromkeys(sizes, initial)
    connection = 65_535
    left = dict(sizes)
    seen = 0
    sent = 0
    deadline = time.monotonic() + seconds
    while any(left.values()) and sent <= most and time.monotonic() < deadline:
        for stream_id in sizes:
            while left[stream_id] and min(windows[stream_id], connection) > 0:
                chunk = min(windows[stream_id], connection, left[stream_id], 16_384)
                left[stream_id] -= chunk
                client.write(client.data(stream_id, b"x" * chunk, end=end and not left[stream_id]))
                windows[stream_id] -= chunk
                connection -= chunk
                sent += chunk
        await client.drain()
        # All the windows allow is sent: wait for the server to grant more.
        with contextlib.suppress(TimeoutError):
            await client.read_until(
                lambda seen=seen: any(isinstance(f, WindowUpdateFrame) for f in client.frames[seen:]),
                timeout=1.0,
            )
        await client.quiet(0.01)  # and what came with it
        granted = [f for f in client.frames[seen:] if isinstance(f, WindowUpdateFrame)]
        seen = len(client.frames)
        if not granted:
            break
        for frame in granted:
            if frame.stream_id == 0:
                connection += frame.window_increment
            elif frame.stream_id in windows:
                windows[frame.stream_id] += frame.window_increment
    return sent


async def test_stalled_streams_get_no_window_beyond_the_budget_then_408_then_the_connection_closes() -> None:
    limits = Http2Limits(request_seconds=8.0)  # well after the bodies stop
    memory = MemoryEventSink()
    async with serving(memory, keep_alive=2.0, limits=limits) as server:
        client = await RawH2.open(server.port)
        try:
            streams = list(range(1, 200, 2))  # 100, the most a client may open
            client.write(b"".join(client.head(stream_id, end=False) for stream_id in streams))
            # Each tries to send a whole body (within the limit), and none ends it.
            # Window for a stream's first 16 KiB, then for the budget (one body) and for the
            # oldest stream's body: the server holds no more. (It used to grant all, 25 MiB.)
            bound = len(streams) * limits.stream_window + 3 * MAX_BODY
            sent = await send_bodies(
                client, dict.fromkeys(streams, MAX_BODY), end=False, seconds=30, most=bound
            )
            assert sent <= bound, sent
            print(f"stalled streams: {sent} bytes of bodies taken")
            # At the request deadline each stream is answered 408, and nothing was stored.
            await client.read_until(lambda: len(client.status) == len(streams), timeout=10)
            assert set(client.status.values()) == {408}
            assert memory.topics == {}
            # Nothing is left in progress: the connection is idle and closes at keep-alive.
            goaway = await client.goaway(timeout=10)
            assert goaway is not None and goaway.error_code == 0
        finally:
            client.close()


async def test_many_large_bodies_at_once_all_arrive() -> None:
    """The budget does not starve honest clients: 20 bodies of 200 KiB sent side by side on one
    connection (well over the budget of one body) all arrive, the oldest first."""
    memory = MemoryEventSink()
    async with serving(memory, limits=Http2Limits()) as server:
        client = await RawH2.open(server.port)
        try:
            streams = list(range(1, 41, 2))
            client.write(b"".join(client.head(stream_id, end=False) for stream_id in streams))
            size = 200 * 1024
            sent = await send_bodies(client, dict.fromkeys(streams, size), end=True, seconds=60)
            assert sent == len(streams) * size
            await client.read_until(lambda: len(client.status) == len(streams), timeout=10)
            assert set(client.status.values()) == {202}
            assert len(memory.topics["topic"]) == len(streams)
        finally:
            client.close()


async def test_rapid_reset_is_told_to_calm_down_and_starts_little_work() -> None:
    held = HeldSink()  # Kafka is slow: nothing stored is acknowledged until the end
    limits = Http2Limits()
    async with serving(held, max_in_flight=1000, limits=limits) as server:
        attacker = await RawH2.open(server.port)
        try:
            attacker.write(attacker.head(1) + attacker.reset(1))  # fills the HPACK table
            again = attacker.head(3)[9:]  # the same head: its block, all indexed now
            pairs = [
                attacker.headers(stream_id, again) + attacker.reset(stream_id)
                for stream_id in range(5, 5 + 2 * 20_000, 2)
            ]
            for start in range(0, len(pairs), 500):
                attacker.write(b"".join(pairs[start : start + 500]))
                if not await attacker.drain(timeout=5):
                    break  # the server closed
            goaway = await attacker.goaway(timeout=10)
            assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
            # No more events went to Kafka than one connection's streams at once.
            assert len(held.held) <= limits.max_streams
        finally:
            attacker.close()
        # Another client is served: the in-flight limit (1000) was not filled by the resets.
        other = await RawH2.open(server.port)
        try:
            other.write(other.head(1, end=False) + other.data(1, b"{}", end=True))
            with contextlib.suppress(TimeoutError):  # a 429 would come at once; a 202 waits
                await other.read_until(lambda: 1 in other.status, timeout=1)
            held.release()
            await other.read_until(lambda: 1 in other.status)
            assert other.status[1] == 202
        finally:
            other.close()


def _flood_frame(kind: str) -> bytes:
    return {
        "ping": PingFrame(0, opaque_data=b"12345678").serialize(),
        "settings": SettingsFrame(0).serialize(),
        "window-update": WindowUpdateFrame(0, window_increment=1).serialize(),
        "priority": PriorityFrame(1, depends_on=0, stream_weight=15).serialize(),
        "empty-data": DataFrame(1).serialize(),
        "unknown-type": ExtensionFrame(0x20, 0, flag_byte=0, body=b"").serialize(),
    }[kind]


@pytest.mark.parametrize(
    "kind", ["ping", "settings", "window-update", "priority", "empty-data", "unknown-type"]
)
async def test_a_flood_of_frames_without_requests_is_told_to_calm_down(kind: str) -> None:
    limits = Http2Limits()
    async with serving(MemoryEventSink(), limits=limits) as server:
        client = await RawH2.open(server.port)
        try:
            client.write(client.head(1, end=False))  # a stream for the DATA and PRIORITY frames
            frame = _flood_frame(kind)
            for _ in range(20):
                client.write(frame * 1000)
                if not await client.drain(timeout=5):
                    break
            goaway = await client.goaway(timeout=10)
            assert goaway is not None and goaway.error_code == ENHANCE_YOUR_CALM
            flooded = len(client.frames)
            assert flooded < 5 * limits.idle_frames  # the acks stop with the GOAWAY
        finally:
            client.close()


async def test_a_client_that_never_reads_is_not_read_and_then_dropped() -> None:
    """PING acks are not flow-controlled: a client that sends PINGs and never reads had every
    ack buffered in the server. With the flood bound lifted, backpressure alone holds: the
    server stops reading the client, holds little for it, and drops it when it stays so."""
    limits = Http2Limits(idle_frames=10**9, write_stall_seconds=1.0)
    async with serving(MemoryEventSink(), limits=limits) as server:
        client = await RawH2.open(server.port, receive_buffer=4096)
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max([most, *(c.held() for c in server.connections if isinstance(c, Http2Connection))])
                await asyncio.sleep(0.005)

        async with asyncio.TaskGroup() as tasks:
            watching = tasks.create_task(watch())
            try:
                pings = PingFrame(0, opaque_data=b"12345678").serialize() * 4096
                for _ in range(64):  # 4 MiB of PINGs, as far as the server takes them
                    client.write(pings)
                    if not await client.drain(timeout=1):
                        break  # the server stopped reading
                # Dropped a second after it stopped reading; the rest is parsing what it
                # read before, which takes a while on a busy machine.
                await until(lambda: not server.connections, 30)
            finally:
                watching.cancel()
                client.close()
        # One read of input left unparsed (asyncio reads 256 KiB at the most), the socket's
        # write buffer up to its high-water mark (64 KiB) and what one piece of input made
        # past it; without backpressure, every ack of the 4 MiB.
        assert most < 512 * 1024, most


async def test_an_answer_waiting_for_window_goes_out_when_settings_open_it() -> None:
    """h2spec 6.9.2/1: a client's SETTINGS_INITIAL_WINDOW_SIZE change opens the window of an
    answer already waiting (only WINDOW_UPDATE used to)."""
    async with serving(MemoryEventSink(), limits=Http2Limits()) as server:
        client = await RawH2.open(server.port)
        try:
            shut = {SettingsFrame.INITIAL_WINDOW_SIZE: 0}
            client.write(SettingsFrame(0, settings=shut).serialize())
            acks = lambda: sum(isinstance(f, SettingsFrame) and "ACK" in f.flags for f in client.frames)  # noqa: E731
            await client.read_until(lambda: acks() == 2)  # (the first acknowledged our empty one)
            client.write(client.head(1, path="/nowhere"))  # a 404 with a body
            await client.read_until(lambda: 1 in client.status)
            assert client.status[1] == 404
            client.write(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1}).serialize())
            await client.read_until(lambda: any(isinstance(f, DataFrame) for f in client.frames))
            [data] = [f for f in client.frames if isinstance(f, DataFrame)]
            assert len(data.data) == 1
        finally:
            client.close()


async def test_after_a_protocol_error_the_goaway_is_read_not_lost_to_a_reset() -> None:
    """h2spec 5.4.1/1: the server closed at once after its GOAWAY, so bytes the client still
    sent made the server's TCP answer with a reset, which discarded the GOAWAY unread."""
    async with serving(MemoryEventSink(), limits=Http2Limits()) as server:
        client = await RawH2.open(server.port)
        try:
            # A PING on a stream (a connection error), and more than the server reads at once
            # after it, so some is still unread when the server closes.
            # The client reads nothing meanwhile, as h2spec: the GOAWAY waits in its socket.
            invalid = b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678"
            client.writer.transport.pause_reading()
            client.write(invalid + PingFrame(0, opaque_data=b"12345678").serialize() * 60_000)
            await client.drain()
            await asyncio.sleep(0.3)
            client.writer.transport.resume_reading()
            goaway = await client.goaway(timeout=10)
            assert goaway is not None and goaway.error_code == 1  # PROTOCOL_ERROR
            assert not client.aborted  # closed, after the server read (and dropped) the rest
        finally:
            client.close()
