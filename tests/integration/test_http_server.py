"""The ingress's own HTTP/1.1 server on loopback, spoken to with raw bytes: keep-alive,
pipelining, chunked bodies, 100-continue, limits, idle connections and graceful shutdown.

The app behind it is the real IngressApp; its sink is in memory (or held back, to have a
request in flight), since what is tested here is the HTTP side. The end-to-end and reliability
suites run the same server against the embedded Kafka broker.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest

from ingress.auth import StaticTokens
from ingress.http import MAX_HEADER_BYTES, HttpServer
from support.http1 import PATH, HeldSink, closed, connect, ids, post, read_response
from support.http1 import serve as _serve
from support.memory_sink import MemoryEventSink
from support.tls import self_signed

__all__ = ["PATH", "HeldSink", "_serve"]  # the HTTP/2 suite and conftest.py take these from here


async def test_keep_alive_and_pipelined_requests_answered_in_order(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    writer.write(post("one"))
    assert (await read_response(reader))[0] == 202
    # Three requests in one write: the answers come back in the order asked, the unknown
    # Broker's 404 between the two 202s.
    unknown = post("two").replace(PATH.encode(), b"/ns/nowhere")
    writer.write(post("one-more") + unknown + post("three"))
    statuses = [(await read_response(reader))[0] for _ in range(3)]
    assert statuses == [202, 404, 202]
    assert ids(memory) == ["one", "one-more", "three"]
    writer.close()


async def test_a_pipelined_burst_pauses_reading_and_loses_nothing(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    writer.write(b"".join(post(f"e{i}") for i in range(100)))
    statuses = [(await read_response(reader))[0] for _ in range(100)]
    assert statuses == [202] * 100
    assert ids(memory) == [f"e{i}" for i in range(100)]
    writer.close()


async def test_chunked_body_is_stored_byte_exact(server: HttpServer, memory: MemoryEventSink) -> None:
    reader, writer = await connect(server)
    request = post("chunked", b"").replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    writer.write(request + b'4\r\n{"a"\r\n6\r\n: [1, \r\n2\r\n2]\r\n1\r\n}\r\n0\r\n\r\n')
    assert (await read_response(reader))[0] == 202
    assert memory.topics["topic"][0].value == b'{"a": [1, 2]}'
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    request = post("continue", b'{"x": 1}', "Expect: 100-continue")
    head, body = request.split(b"\r\n\r\n", 1)
    writer.write(head + b"\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    assert (await read_response(reader))[0] == 202
    assert ids(memory) == ["continue"]
    writer.close()


async def test_content_length_over_the_limit_is_413_before_the_body(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    head = post("big", b"x" * 5000).split(b"\r\n\r\n", 1)[0]
    writer.write(head + b"\r\n\r\n")  # no body sent at all
    status, headers, body = await read_response(reader)
    assert status == 413 and headers["connection"] == "close"
    assert "1000 bytes" in json.loads(body)["error"]
    assert await closed(reader)
    assert memory.topics == {}


async def test_streamed_body_over_the_limit_is_413_and_nothing_is_stored(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    request = post("stream", b"").replace(b"Content-Length: 0", b"Transfer-Encoding: chunked")
    writer.write(request + b"".join(b"200\r\n" + b"x" * 512 + b"\r\n" for _ in range(3)))
    status, headers, _ = await read_response(reader)
    assert status == 413 and headers["connection"] == "close"
    assert await closed(reader)
    assert memory.topics == {}


async def test_an_unauthenticated_request_is_refused_before_its_body_is_read(memory: MemoryEventSink) -> None:
    server, task = await _serve(
        memory, StaticTokens([("sesame", ("broker/ns/default",)), ("other", ("broker/ns/elsewhere",))])
    )
    try:
        # Heads only, bodies never sent: the answers cannot wait for them.
        for token, status in (("", 401), ("wrong", 401), ("other", 403)):
            reader, writer = await connect(server)
            auth = f"Authorization: Bearer {token}" if token else "X-No-Token: 1"
            head = post(f"no-{token}", b"x" * 900, auth).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
            writer.write(head)
            answer, _, body = await asyncio.wait_for(read_response(reader), 5)
            assert answer == status, body
            assert await closed(reader)
            writer.close()
        # A good token's request is read whole and stored, once: its head was checked already.
        reader, writer = await connect(server)
        writer.write(post("allowed", b'{"a": 1}', "Authorization: Bearer sesame"))
        assert (await read_response(reader))[0] == 202
        writer.close()
        assert ids(memory) == ["allowed"]
    finally:
        server.shutdown()
        await task


async def test_oversized_header_fields_are_431(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("h", b"{}", "ce-big: " + "x" * (MAX_HEADER_BYTES + 1)))
    status, _, _ = await read_response(reader)
    assert status == 431
    assert await closed(reader)


async def test_a_header_field_that_never_ends_is_cut_off_with_431(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"POST /ns/default HTTP/1.1\r\nHost: x\r\nce-endless: ")
    for _ in range(40):  # 40 x 4 KiB, no line end: more than the limit, in pieces
        try:
            writer.write(b"a" * 4096)
            await writer.drain()
        except ConnectionError:
            break  # the server has answered and closed
        await asyncio.sleep(0.005)
    status, _, _ = await read_response(reader)
    assert status == 431
    assert await closed(reader)


async def test_an_upgrade_request_is_answered_in_http_1_1_with_its_body_kept(
    server: HttpServer, memory: MemoryEventSink
) -> None:
    reader, writer = await connect(server)
    upgrade = post("h2c", b'{"kept": true}', "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c")
    # Sent in pieces, the body separately, then a second request on the same connection.
    head, body = upgrade.split(b"\r\n\r\n", 1)
    writer.write(head + b"\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.write(body[:5])
    await asyncio.sleep(0.05)
    writer.write(body[5:] + post("after"))
    assert [(await read_response(reader))[0] for _ in range(2)] == [202, 202]
    assert ids(memory) == ["h2c", "after"]
    assert memory.topics["topic"][0].value == b'{"kept": true}'
    # All in one write too.
    writer.write(post("h2c-2", b"[1]", "Connection: Upgrade", "Upgrade: websocket") + post("after-2"))
    assert [(await read_response(reader))[0] for _ in range(2)] == [202, 202]
    assert ids(memory)[2:] == ["h2c-2", "after-2"]
    assert memory.topics["topic"][2].value == b"[1]"
    writer.close()


async def test_malformed_request_is_400_and_closed(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("ok") + b"NOT HTTP AT ALL\r\n\r\n")
    assert (await read_response(reader))[0] == 202  # what came before is still answered
    status, _, body = await read_response(reader)
    assert status == 400 and "malformed HTTP request" in json.loads(body)["error"]
    assert await closed(reader)


async def test_http_1_0_closes_after_the_answer_and_head_has_no_body(server: HttpServer) -> None:
    reader, writer = await connect(server)
    writer.write(post("old", version="1.0"))
    status, headers, _ = await read_response(reader)
    assert status == 202 and headers["connection"] == "close"
    assert await closed(reader)
    reader, writer = await connect(server)
    writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 2" in head and b"date: " in head
    # The next bytes are the GET's answer, not a HEAD body.
    assert (await read_response(reader))[2] == b"ok"
    writer.close()


async def test_idle_connections_are_closed_after_keep_alive(memory: MemoryEventSink) -> None:
    server, task = await _serve(memory, keep_alive=0.3, head_timeout=0.3, body_timeout=0.3)
    try:
        reader, writer = await connect(server)
        writer.write(post("before-idle"))
        assert (await read_response(reader))[0] == 202
        assert await closed(reader)
        # A request that does not arrive whole in time is answered 408 and its connection
        # closed, whether its head or its body was missing; none of it is stored.
        for cut in (20, -3):
            reader, writer = await connect(server)
            writer.write(post(f"slow{cut}")[:cut])
            status, _, body = await read_response(reader)
            assert status == 408 and b"in time" in body
            assert await closed(reader)
            writer.close()
        assert ids(memory) == ["before-idle"]
    finally:
        server.shutdown()
        await task


async def test_graceful_shutdown_answers_requests_in_flight_and_closes_idle_ones() -> None:
    sink = HeldSink()
    server, task = await _serve(sink, graceful_timeout=5)
    busy_reader, busy_writer = await connect(server)
    idle_reader, _ = await connect(server)
    busy_writer.write(post("in-flight"))
    while not sink.held:
        await asyncio.sleep(0.01)
    server.shutdown()
    assert await closed(idle_reader)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)  # no longer accepting
    assert not task.done()  # still waiting for the answer in flight
    sink.release()
    status, headers, _ = await read_response(busy_reader)
    assert status == 202 and headers["connection"] == "close"
    assert await closed(busy_reader)
    await asyncio.wait_for(task, 5)


async def test_graceful_shutdown_gives_up_after_its_timeout() -> None:
    sink = HeldSink()
    server, task = await _serve(sink, graceful_timeout=0.3)
    reader, writer = await connect(server)
    writer.write(post("never-acknowledged"))
    while not sink.held:
        await asyncio.sleep(0.01)
    server.shutdown()
    await asyncio.wait_for(task, 5)
    assert await closed(reader)


async def test_tls(tmp_path: Path, memory: MemoryEventSink) -> None:
    certfile, keyfile = self_signed(tmp_path)
    server, task = await _serve(memory, certfile=certfile, keyfile=keyfile)
    try:
        trusted = ssl.create_default_context(cafile=certfile)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=trusted, server_hostname="localhost"
        )
        writer.write(post("over-tls"))
        assert (await read_response(reader))[0] == 202
        assert ids(memory) == ["over-tls"]
        writer.close()
        # Plain HTTP on the TLS port gets no answer, and stores nothing.
        reader, writer = await connect(server)
        writer.write(post("plain"))
        assert await closed(reader)
        assert ids(memory) == ["over-tls"]
    finally:
        server.shutdown()
        await task
