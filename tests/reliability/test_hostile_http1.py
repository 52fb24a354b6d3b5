"""Hostile clients against the ingress's own HTTP/1.1 server, in raw bytes on loopback. Each test
is a way one unauthenticated client used to hold or grow the server, and each failed before the
bounds it checks:

- pipelining: thousands of requests behind one that is answered later are answered in order
  (they used to recurse until RecursionError, and the connection never answered again), with at
  most MAX_PIPELINED of them held at a time;
- a client that sends and never reads stops being read (the answers used to pile up, about
  three times the bytes sent), and one that stays so past the body deadline is dropped;
- requests split across reads at awkward places are never a 431 (two reads in a row ending
  inside a head used to count the whole second read as header bytes);
- a head or body trickled in gets 408 at its own deadline (it was the keep-alive time, 75 s),
  idle keep-alive connections are not cut by those deadlines, connections over the cap are
  refused with a 503, a TLS handshake that never comes is closed;
- a flood of bodies to unknown paths is answered 404 before the bodies are read, with one
  shared refresh of the routes at a time (each used to be read whole and hold a task for up
  to a second), and a Broker the refresh finds gets its body read;
- a missing or doubled Host is 400 (RFC 9112 section 3.2);
- a refusal after a refusal writes nothing more (it used to write after write_eof and log a
  traceback per request);
- header fields are bounded in number as well as bytes, trailer fields never become headers of
  the event (they used to be added to them), chunk extensions count against the body (they
  used to be read without end).

The app behind the server is the real IngressApp with an in-memory sink.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from channel.settings import Settings
from ingress.app import IngressApp
from ingress.http import MAX_HEADER_FIELDS, MAX_PIPELINED, HttpServer
from ingress.routing import Route
from support.http1 import closed, connect, ids, post, read_response, serving
from support.memory_sink import MemoryEventSink
from support.tls import self_signed

pytestmark = [pytest.mark.reliability]


@pytest.fixture
async def memory() -> MemoryEventSink:
    return MemoryEventSink()


@pytest.fixture
async def server(memory: MemoryEventSink) -> AsyncIterator[HttpServer]:
    async with serving(memory) as server:
        yield server


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
ROUTE = Route("broker", "ns", "default", "topic")


def _app(
    sink: MemoryEventSink, *, max_body: int = 1000, refresh: Callable[[], Awaitable[None]] | None = None
) -> IngressApp:
    app = IngressApp(Settings(ingress_max_body_bytes=max_body), sink, ready=lambda: True, refresh=refresh)
    app.routes = {("broker", "ns", "default"): ROUTE}
    return app


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds (polled), failing after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


async def _statuses(reader: asyncio.StreamReader, count: int) -> list[int]:
    """The statuses of the next `count` answers, read in bulk (faster than one read_response
    each); the server must send nothing after them meanwhile."""
    statuses: list[int] = []
    tail = b""
    while len(statuses) < count:
        data = await asyncio.wait_for(reader.read(1 << 20), 10)
        assert data, f"closed after {len(statuses)} of {count} answers"
        data = tail + data
        last = 0
        for found in _STATUS_LINE.finditer(data):
            statuses.append(int(found.group(1)))
            last = found.end()
        tail = data[max(last, len(data) - 12) :]
    assert len(statuses) == count
    return statuses


# -- pipelining and backpressure --------------------------------------------------------------


async def test_deep_pipelining_behind_a_slow_answer_is_answered_in_order(memory: MemoryEventSink) -> None:
    gate = asyncio.Event()

    async def refresh() -> None:
        await gate.wait()

    async with serving(memory, app=_app(memory, refresh=refresh)) as server:
        reader, writer = await connect(server)
        count = 5000
        # One write: an unknown path (answered after a refresh of the routes), 5,000 health
        # checks behind it, then a POST as a sentinel that all went through the same queue.
        writer.write(b"GET /x/y HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTHZ * count + post("sentinel"))
        await until(lambda: server.backlog().requests >= MAX_PIPELINED // 2)
        backlog = server.backlog()
        assert backlog.requests <= MAX_PIPELINED
        assert backlog.unread <= 256 * 1024  # at most one read waits unparsed
        gate.set()
        assert await _statuses(reader, count + 2) == [404, *[200] * count, 202]
        assert ids(memory) == ["sentinel"]
        assert server.backlog().requests == 0
        # The connection goes on as before.
        writer.write(HEALTHZ)
        assert (await read_response(reader))[0] == 200
        writer.close()


async def _flood(writer: asyncio.StreamWriter, chunk: bytes, total: int, sent: list[int]) -> None:
    while sent[0] < total:
        writer.write(chunk)
        sent[0] += len(chunk)
        await writer.drain()


async def _small_buffers(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose own socket buffers are small, so that what the kernel holds on the
    client's side does not hide what the server holds."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await asyncio.open_connection(sock=sock)


async def test_a_client_that_never_reads_stops_being_read(memory: MemoryEventSink) -> None:
    async with serving(memory) as server:
        reader, writer = await _small_buffers(server)
        # 64 MiB of health checks, each answered with about four times its size, never read.
        chunk = HEALTHZ * 2048
        total, sent = 64 << 20, [0]
        flood = asyncio.create_task(_flood(writer, chunk, total, sent))
        peak = 0
        # The flood stalls when the kernel's buffers are full: the server stopped reading.
        async with asyncio.timeout(60):
            while True:
                before = sent[0]
                done, _ = await asyncio.wait([flood], timeout=1.0)
                backlog = server.backlog()
                peak = max(peak, backlog.unsent + backlog.unread)
                if done or sent[0] == before:
                    break
        assert not flood.done(), "the server read all 64 MiB without anyone reading its answers"
        assert sent[0] < 32 << 20
        assert peak < 1 << 20, f"{peak} bytes held for a client that reads nothing"
        assert server.backlog().requests <= MAX_PIPELINED
        # Then it reads: every request sent is answered, and the connection goes on.
        flood.cancel()
        assert set(await _statuses(reader, sent[0] // len(HEALTHZ))) == {200}
        writer.write(post("after"))
        assert (await read_response(reader))[0] == 202
        writer.close()


async def test_a_client_that_stops_reading_is_dropped_after_the_body_deadline(
    memory: MemoryEventSink,
) -> None:
    async with serving(memory, body_timeout=0.5) as server:
        _, writer = await _small_buffers(server)
        flood = asyncio.create_task(_flood(writer, HEALTHZ * 2048, 64 << 20, [0]))
        await until(lambda: not server.connections)  # aborted: its answers were never taken
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(flood, 10)


@pytest.mark.parametrize("piece", [1, 7, 100, 1000, 65536 - 3, 200_000], ids=lambda n: f"reads-of-{n}")
async def test_pipelined_requests_split_across_reads_are_not_431(memory: MemoryEventSink, piece: int) -> None:
    async with serving(memory) as server:
        reader, writer = await connect(server)
        count = 1500 if piece >= 1000 else 60
        stream = b"".join(post(f"e{i}", b'{"n": %d}' % i, "X-Pad: " + "p" * (i % 300)) for i in range(count))
        answered = 0
        for start in range(0, len(stream), piece):
            writer.write(stream[start : start + piece])
            await writer.drain()
            if piece >= 1000:
                # Each write read before the next, so that reads end inside heads, as they fall.
                done = stream[: start + piece].count(b"POST ") - (start + piece < len(stream))
                while answered < done:
                    status, _, body = await read_response(reader)
                    assert status == 202, body
                    answered += 1
        while answered < count:
            status, _, body = await read_response(reader)
            assert status == 202, body
            answered += 1
        assert ids(memory) == [f"e{i}" for i in range(count)]
        writer.close()


# -- slow clients, the connection cap, TLS --------------------------------------------------


async def _trickle(writer: asyncio.StreamWriter, data: bytes, interval: float = 0.05) -> None:
    """One byte per `interval`, until the data ends or the server closes."""
    for i in range(len(data)):
        try:
            writer.write(data[i : i + 1])
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(interval)


@pytest.mark.parametrize("part", ["head", "body"])
async def test_a_trickled_request_gets_408_at_its_deadline(memory: MemoryEventSink, part: str) -> None:
    async with serving(memory, head_timeout=0.5, body_timeout=1.0) as server:
        reader, writer = await connect(server)
        request = post("slow", b'{"x": "' + b"y" * 500 + b'"}')
        head, body = request.split(b"\r\n\r\n", 1)
        started = time.monotonic()
        if part == "head":
            trickle = asyncio.create_task(_trickle(writer, request))
        else:
            writer.write(head + b"\r\n\r\n")
            trickle = asyncio.create_task(_trickle(writer, body))
        status, headers, answer = await read_response(reader, timeout=10)
        waited = time.monotonic() - started
        assert status == 408 and headers["connection"] == "close", answer
        assert (0.4 if part == "head" else 0.9) < waited < 5, waited
        assert await closed(reader)
        trickle.cancel()
        assert ids(memory) == []


async def test_idle_keep_alive_is_not_cut_by_the_request_deadlines(memory: MemoryEventSink) -> None:
    async with serving(memory, head_timeout=0.2, body_timeout=0.2, keep_alive=1.0) as server:
        reader, writer = await connect(server)
        writer.write(post("first"))
        assert (await read_response(reader))[0] == 202
        await asyncio.sleep(0.5)  # idle past both request deadlines, within keep-alive
        writer.write(post("second"))
        assert (await read_response(reader))[0] == 202
        assert await closed(reader)  # then keep-alive ends it
        assert ids(memory) == ["first", "second"]


async def test_connections_over_the_cap_are_refused(
    memory: MemoryEventSink, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(memory, max_connections=3) as server:
        held = []
        for i in range(3):
            reader, writer = await connect(server)
            writer.write(post(f"held{i}"))
            assert (await read_response(reader))[0] == 202
            held.append((reader, writer))
        with caplog.at_level(logging.WARNING, logger="ingress.http"):
            for _ in range(5):
                reader, writer = await connect(server)
                status, headers, _ = await read_response(reader)
                assert status == 503 and headers["connection"] == "close" and "retry-after" in headers
                assert await closed(reader)
                writer.close()
        refusals = [r for r in caplog.records if "connections open" in r.getMessage()]
        assert len(refusals) == 1  # sampled: one line for the five
        held[0][1].close()
        await until(lambda: len(server.connections) < 3)
        reader, writer = await connect(server)
        writer.write(post("after"))
        assert (await read_response(reader))[0] == 202
        writer.close()


async def test_a_tls_handshake_that_never_comes_is_closed(tmp_path: Path, memory: MemoryEventSink) -> None:
    certfile, keyfile = self_signed(tmp_path)
    async with serving(memory, certfile=certfile, keyfile=keyfile, tls_handshake_timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as silent:
            silent.settimeout(10)
            started = time.monotonic()
            assert await asyncio.to_thread(silent.recv, 1) == b""
            assert time.monotonic() - started < 5
        # A client that does shake hands is served.
        trusted = ssl.create_default_context(cafile=certfile)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=trusted, server_hostname="localhost"
        )
        writer.write(post("over-tls"))
        assert (await read_response(reader))[0] == 202
        writer.close()


# -- unknown routes ---------------------------------------------------------------------------


async def test_a_flood_of_bodies_to_unknown_paths_is_404_before_the_bodies(memory: MemoryEventSink) -> None:
    refreshes = 0

    async def refresh() -> None:
        nonlocal refreshes
        refreshes += 1
        await asyncio.sleep(0.3)

    flood: set[asyncio.Task[None]] = set()
    peak = 0
    async with serving(memory, app=_app(memory, max_body=2 << 20, refresh=refresh)) as server:

        async def unknown(i: int) -> None:
            reader, writer = await connect(server)
            head = post(f"u{i}", b"", path=f"/nowhere/b{i}").replace(
                b"Content-Length: 0", b"Content-Length: 1000000"
            )
            writer.write(head + b"x" * 65536)  # of a million bytes, the rest never sent
            # No asyncio.wait_for here, which would make a task of each read: the test's own
            # timeout bounds them.
            answer = await reader.read()  # the 404, and the end of the connection
            assert answer.startswith(b"HTTP/1.1 404 ") and b"connection: close" in answer
            writer.close()

        before = asyncio.all_tasks()
        flood.update(asyncio.create_task(unknown(i)) for i in range(300))
        # Meanwhile a known Broker is served as ever: the flood takes nothing of the in-flight limit.
        reader, writer = await connect(server)
        writer.write(post("known"))
        assert (await read_response(reader))[0] == 202
        while not all(t.done() for t in flood):
            peak = max(peak, len(asyncio.all_tasks() - before - flood))
            await asyncio.sleep(0.01)
        await asyncio.gather(*flood)
        assert peak <= 2, f"{peak} tasks for 300 requests"  # the refresh, and this test's own
        assert refreshes <= 5, f"{refreshes} refreshes for 300 requests"
        assert ids(memory) == ["known"]


def _large(event_id: str, path: str) -> bytes:
    """A request with a body over 64 KiB, the size from which an unknown path is refused before
    the body is read."""
    return post(event_id, b'{"pad": "' + b"p" * 100_000 + b'"}', "Expect: 100-continue", path=path)


async def test_a_broker_the_refresh_finds_gets_its_body_read(memory: MemoryEventSink) -> None:
    later = Route("broker", "ns", "later", "topic")
    apps: list[IngressApp] = []

    async def refresh() -> None:  # the controller reported ns/later Ready meanwhile
        await asyncio.sleep(0.05)
        apps[0].routes = {("broker", "ns", "later"): later}

    app = _app(memory, max_body=2 << 20, refresh=refresh)
    apps.append(app)
    async with serving(memory, app=app) as server:
        reader, writer = await connect(server)
        head, body = _large("late", "/ns/later").split(b"\r\n\r\n", 1)
        writer.write(head + b"\r\n\r\n")
        # 100 Continue only once the refresh found the Broker; then the body is read and stored.
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        assert (await read_response(reader))[0] == 202
        # A small body to a path still unknown after the refresh: read, 404, the connection goes on.
        writer.write(post("small", path="/ns/gone"))
        status, headers, _ = await read_response(reader)
        assert status == 404 and "connection" not in headers
        # A large one: 404 without 100 Continue or the body, and the connection closes.
        writer.write(_large("lost", "/ns/gone").split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert status == 404 and headers["connection"] == "close"
        assert await closed(reader)
        assert ids(memory) == ["late"]


# -- malformed and abusive heads and bodies ---------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (post("no-host").replace(b"Host: ingress\r\n", b""), 400),
        (post("two-hosts").replace(b"Host: ingress\r\n", b"Host: a\r\nHost: b\r\n"), 400),
        (post("one-host"), 202),
        (post("http-1.0", version="1.0").replace(b"Host: ingress\r\n", b""), 202),
        (post("two-on-1.0", version="1.0").replace(b"Host: ingress\r\n", b"Host: a\r\nhost: b\r\n"), 400),
    ],
    ids=["missing", "twice", "once", "missing-on-1.0", "twice-on-1.0"],
)
async def test_host_is_required_once(server: HttpServer, request_bytes: bytes, status: int) -> None:
    reader, writer = await connect(server)
    writer.write(request_bytes)
    answer, headers, body = await read_response(reader)
    assert answer == status, body
    if status == 400:
        assert b"Host" in body and headers["connection"] == "close"
        assert await closed(reader)
    writer.close()


def _chunked(event_id: str, chunks: bytes, *extra: str) -> bytes:
    return post(event_id, b"", *extra).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked") + chunks


@pytest.mark.parametrize(
    "request_bytes",
    [
        # 413 while the body streams in, then a malformed chunk size in the same read.
        _chunked("twice", b"800\r\n" + b"x" * 2048 + b"\r\nZZZ\r\n"),
        # 413 from Content-Length, then bytes that are no request.
        post("twice", b"x" * 5000).split(b"\r\n\r\n")[0] + b"\r\n\r\n\x00\x01 NOT HTTP\r\n\r\n",
        # 431, then more header fields.
        b"POST /ns/default HTTP/1.1\r\nHost: x\r\nce-big: " + b"x" * 70_000 + b"\r\nce-more: 1\r\n\r\n",
    ],
    ids=["413-then-malformed", "413-then-garbage", "431-then-fields"],
)
async def test_a_refusal_after_a_refusal_writes_nothing_more(
    server: HttpServer, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        reader, writer = await connect(server)
        writer.write(request_bytes)
        status, headers, _ = await read_response(reader)
        assert status in (413, 431) and headers["connection"] == "close"
        assert await closed(reader)  # one answer and the end, nothing after it
        writer.close()
        # The end of the server's own work with it: a health check on a new connection.
        reader, writer = await connect(server)
        writer.write(HEALTHZ)
        assert (await read_response(reader))[0] == 200
        writer.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == []


async def test_header_fields_are_bounded_in_number(server: HttpServer) -> None:
    reader, writer = await connect(server)
    fields = [f"x-{i}: 1" for i in range(MAX_HEADER_FIELDS + 1)]
    writer.write(post("many", b"{}", *fields))
    status, _, body = await read_response(reader)
    assert status == 431 and b"header fields" in body
    assert await closed(reader)
    # As many as the bound allows are fine.
    reader, writer = await connect(server)
    writer.write(post("enough", b"{}", *fields[: MAX_HEADER_FIELDS // 2]))
    assert (await read_response(reader))[0] == 202
    writer.close()


async def test_trailer_fields_never_become_headers_of_the_event(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    writer.write(_chunked("trailers", b"2\r\n{}\r\n0\r\nce-type: injected\r\nce-id: other\r\n\r\n"))
    status, _, body = await read_response(reader)
    assert status == 202, body
    (record,) = memory.topics["topic"]
    assert dict(record.headers)["ce_type"] == b"t" and dict(record.headers)["ce_id"] == b"trailers"
    writer.close()


async def test_chunk_extensions_count_against_the_body(server: HttpServer, memory: MemoryEventSink) -> None:
    reader, writer = await connect(server)
    writer.write(_chunked("ext", b"1;e="))
    # A mebibyte of one chunk extension that never ends, a kilobyte body limit: 413 (read after).
    for _ in range(64):
        try:
            writer.write(b"e" * 16384)
            await writer.drain()
        except ConnectionError:
            break
    status, headers, body = await read_response(reader)
    assert status == 413 and headers["connection"] == "close", body
    assert memory.topics == {}


async def test_many_tiny_chunks_are_stored_whole(server: HttpServer, memory: MemoryEventSink) -> None:
    reader, writer = await connect(server)
    body = json.dumps({"d": "z" * 800}).encode()
    writer.write(
        _chunked(
            "tiny", b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body))) + b"0\r\n\r\n"
        )
    )
    assert (await read_response(reader))[0] == 202
    assert memory.topics["topic"][0].value == body
    writer.close()
