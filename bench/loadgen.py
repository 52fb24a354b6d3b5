"""An open-loop load generator: POST binary-mode CloudEvents at a fixed rate, report latency.

Run as its own process so the load does not share the measured server's event loop. Latency is
measured from each request's scheduled start, so a stalled server is not hidden (no coordinated
omission). Bounded: `--rate` x `--seconds` requests, then it stops (a request still unanswered
`--grace` seconds after the last was scheduled counts as an error).

HTTP/1.1 is written and read by hand on `--connections` keep-alive connections (one request in
flight on each; requests due while all are busy wait in a backlog, their clock running): a
general-purpose client adds a millisecond or more of its own to every figure on a small machine.

    python bench/loadgen.py URL --rate 5000 --seconds 10 --connections 64 --body-bytes 1024 [--stamp]

With `--stamp`, each event carries the extension `benchsent`: the wall-clock time just before
the request is written, which bench/sink.py subtracts from its receipt time (end-to-end latency).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import time
from typing import cast
from urllib.parse import urlsplit


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


class Request:
    """The bytes of one POST, minus the per-event headers."""

    def __init__(self, url: str, body_bytes: int) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.body = b'{"data":"' + b"x" * max(0, body_bytes - 12) + b'"}'
        self.head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Content-Type: application/json\r\n"
            "Ce-Specversion: 1.0\r\n"
            "Ce-Type: bench.event\r\n"
            "Ce-Source: loadgen\r\n"
            f"Content-Length: {len(self.body)}\r\n"
        ).encode()

    def encode(self, index: int, stamp: bool) -> bytes:
        extra = f"Ce-Id: lg-{index}\r\n"
        if stamp:
            extra += f"Ce-Benchsent: {time.time()!r}\r\n"
        return self.head + extra.encode() + b"\r\n" + self.body


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.scheduled = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, index: int, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.transport.write(self.load.request.encode(index, self.load.stamp))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        self.load.answered(self, int(head[9:12]), time.perf_counter() - self.scheduled)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.lost(self)


class Load:
    """Requests due but not yet sent, idle connections, and what came back."""

    def __init__(self, request: Request, stamp: bool) -> None:
        self.request = request
        self.stamp = stamp
        self.idle: list[Connection] = []
        self.backlog: collections.deque[tuple[int, float]] = collections.deque()
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.done = asyncio.Event()
        self.expected = 0

    def submit(self, index: int, scheduled: float) -> None:
        if self.idle:
            self.idle.pop().send(index, scheduled)
        else:
            self.backlog.append((index, scheduled))

    def answered(self, connection: Connection, status: int, latency: float) -> None:
        self.latencies.append(latency)
        if status != 202:
            self.errors[str(status)] = self.errors.get(str(status), 0) + 1
        if len(self.latencies) >= self.expected:
            self.done.set()
        if self.backlog:
            connection.send(*self.backlog.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection: Connection) -> None:
        if connection in self.idle:
            self.idle.remove(connection)
        self.errors["connection lost"] = self.errors.get("connection lost", 0) + 1


async def run(
    url: str,
    rate: float,
    seconds: float,
    connections: int,
    body_bytes: int,
    stamp: bool = False,
    grace: float = 30.0,
) -> dict[str, float]:
    request = Request(url, body_bytes)
    load = Load(request, stamp)
    load.expected = total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    for _ in range(connections):
        _, connection = await loop.create_connection(lambda: Connection(load), request.host, request.port)
        load.idle.append(connection)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        # Everything due by now goes out at once; then sleep until the next one is due, at least
        # 1 ms (the event loop's timer resolution: shorter sleeps spin). A request sent up to 1 ms
        # late has that in its latency, which is measured from its scheduled time.
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        for index in range(sent, due):
            load.submit(index, start + index / rate)
        sent = due
        await asyncio.sleep(max(0.001, start + sent / rate - time.perf_counter()))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            await load.done.wait()
    elapsed = time.perf_counter() - start
    latencies = sorted(load.latencies)
    errors = dict(load.errors)
    unanswered = total - len(latencies)
    if unanswered > 0:
        errors["unanswered"] = unanswered
    return {
        "requests": total,
        "achieved_rate": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p90_ms": percentile(latencies, 0.90) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "errors": sum(errors.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--stamp", action="store_true", help="add the benchsent extension")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to wait for the last answers")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        run(args.url, args.rate, args.seconds, args.connections, args.body_bytes, args.stamp, args.grace)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
