"""HTTP/2 to the ingress (CEH-16): curl with prior knowledge (h2c) and over TLS (ALPN), and a
client on the h2 library for what curl does not show: several streams on one connection, limits
mid-stream, a client's reset, graceful shutdown. The app is the real IngressApp on loopback."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from test_http_server import PATH, HeldSink, _serve

from ingress.http import HttpServer
from support.memory_sink import MemoryEventSink
from support.tls import self_signed

CURL = shutil.which("curl") or "/usr/bin/curl"
EVENT = [
    (b"ce-id", b"h2-1"),
    (b"ce-specversion", b"1.0"),
    (b"ce-type", b"greeting"),
    (b"ce-source", b"h2"),
    (b"content-type", b"application/json"),
]


async def curl(*args: str) -> tuple[str, str]:
    """Run curl; (what -w printed, the body)."""
    process = await asyncio.create_subprocess_exec(
        CURL, "-sS", "-o", "-", "-w", "\n%{http_version} %{http_code}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    body, _, written = out.decode().rpartition("\n")
    return written, body


def _curl_event(event_id: str) -> list[str]:
    return [
        "-H", f"ce-id: {event_id}", "-H", "ce-specversion: 1.0", "-H", "ce-type: greeting",
        "-H", "ce-source: curl", "-H", "content-type: application/json", "--data-binary", '{"a": 1}',
    ]  # fmt: skip


async def test_curl_with_prior_knowledge(server: HttpServer, memory: MemoryEventSink) -> None:
    written, _ = await curl(
        "--http2-prior-knowledge", *_curl_event("c1"), f"http://127.0.0.1:{server.port}{PATH}"
    )
    assert written == "2 202"
    [record] = memory.topics["topic"]
    assert record.value == b'{"a": 1}' and dict(record.headers)["ce_id"] == b"c1"
    # The same port still speaks HTTP/1.1.
    written, _ = await curl("--http1.1", *_curl_event("c2"), f"http://127.0.0.1:{server.port}{PATH}")
    assert written == "1.1 202"
    # Invalid events get the same answers as over HTTP/1.1.
    written, body = await curl(
        "--http2-prior-knowledge", "-H", "content-type: text/plain", "--data-binary", "x",
        f"http://127.0.0.1:{server.port}{PATH}",
    )  # fmt: skip
    assert written == "2 400" and json.loads(body)["error"] == "not a valid CloudEvent"


async def test_h2_over_tls_by_alpn_many_streams_on_one_connection(
    tmp_path: Path, memory: MemoryEventSink
) -> None:
    """Over TLS, ALPN picks h2; curl multiplexes 20 transfers onto one connection. (Over h2c,
    curl 7.88 fails a second request on a reused connection, to any server on the h2 library:
    checked against that library's minimal server; a single request works, as tested above.)"""
    certfile, keyfile = self_signed(tmp_path)
    server, task = await _serve(memory, certfile=certfile, keyfile=keyfile)
    try:
        url = f"https://localhost:{server.port}{PATH}"
        each = [
            "--http2",
            "--cacert",
            certfile,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code} %{num_connects}\n",
        ]
        args = ["-sS", "--parallel", "--parallel-max", "20"]
        for i in range(20):
            args += [*each, *_curl_event(f"t{i}"), url, "--next"]
        process = await asyncio.create_subprocess_exec(
            CURL, *args[:-1], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert {line.rsplit(" ", 1)[0] for line in lines} == {"2 202"} and len(lines) == 20
        assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == 1  # one connection for all
        ids = sorted(dict(r.headers)["ce_id"] for r in memory.topics["topic"])
        assert ids == sorted(f"t{i}".encode() for i in range(20))
        written, _ = await curl("--http1.1", "--cacert", certfile, *_curl_event("old"), url)
        assert written == "1.1 202"
    finally:
        server.shutdown()
        await task


class _Client:
    """A bare HTTP/2 client with prior knowledge, on the h2 library."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.status: dict[int, int] = {}
        self.bodies: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.reset: set[int] = set()
        self.goaway = False

    @classmethod
    async def open(cls, port: int) -> _Client:
        client = cls(*await asyncio.open_connection("127.0.0.1", port))
        client.flush()
        return client

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    def send(self, headers: list[tuple[bytes, bytes]], body: bytes = b"", *, end: bool = True) -> int:
        stream = self.conn.get_next_available_stream_id()
        request = [
            (b":method", b"POST"),
            (b":path", PATH.encode()),
            (b":scheme", b"http"),
            (b":authority", b"ingress"),
        ]
        self.conn.send_headers(stream, request + headers, end_stream=not body and end)
        if body:
            self.conn.send_data(stream, body, end_stream=end)
        self.flush()
        return stream

    async def until(self, done: object, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not done():  # type: ignore[operator]
                data = await self.reader.read(65536)
                if not data:
                    return
                for event in self.conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        self.status[event.stream_id] = int(dict(event.headers or [])[b":status"])
                    elif isinstance(event, h2.events.DataReceived):
                        self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + (
                            event.data or b""
                        )
                        self.conn.acknowledge_received_data(
                            event.flow_controlled_length or 0, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        self.ended.add(event.stream_id)
                    elif isinstance(event, h2.events.StreamReset):
                        self.reset.add(event.stream_id)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        self.goaway = True
                self.flush()

    def close(self) -> None:
        self.writer.close()


async def test_limits_apply_per_stream_and_the_connection_goes_on(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    client = await _Client.open(server.port)
    try:
        # Declared over the limit (1000 bytes): 413 before any of the body is sent.
        declared = client.send([*EVENT, (b"content-length", b"5000")], end=False)
        # Over the limit as it arrives, with no content-length.
        streamed = client.send(EVENT, b"x" * 1500)
        good = client.send(EVENT, b'{"ok": true}')
        await client.until(lambda: {declared, streamed, good} <= set(client.status) and good in client.ended)
        assert (client.status[declared], client.status[streamed], client.status[good]) == (413, 413, 202)
        assert json.loads(client.bodies[declared])["error"] == "body larger than 1000 bytes"
        assert [r.value for r in memory.topics["topic"]] == [b'{"ok": true}']
    finally:
        client.close()


async def test_a_stream_reset_before_its_body_is_whole_stores_nothing(memory: MemoryEventSink) -> None:
    server, task = await _serve(memory)
    client = await _Client.open(server.port)
    try:
        cut = client.send(EVENT, b'{"half":', end=False)
        client.conn.reset_stream(cut)
        good = client.send(EVENT, b"{}")
        await client.until(lambda: good in client.ended)
        assert client.status[good] == 202
        assert [r.value for r in memory.topics["topic"]] == [b"{}"]
    finally:
        client.close()
        server.shutdown()
        await task


async def test_graceful_shutdown_answers_streams_in_progress_and_refuses_new_ones() -> None:
    held = HeldSink()
    server, task = await _serve(held)
    client = await _Client.open(server.port)
    try:
        first = client.send(EVENT, b"{}")
        await asyncio.sleep(0.2)  # the first stream is with the sink, waiting for Kafka
        server.shutdown()
        await asyncio.sleep(0.2)
        late = client.send(EVENT, b"{}")
        await client.until(lambda: late in client.reset)
        assert first not in client.status  # not answered before Kafka acknowledged
        held.release()
        await client.until(lambda: first in client.ended and client.goaway)
        assert client.status[first] == 202
        await asyncio.wait_for(task, 10)  # the server stopped once the stream was answered
    finally:
        client.close()
        if not task.done():
            server.shutdown()
            await task
