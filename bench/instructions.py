"""Instructions per request through the ingress's Python path, counted by callgrind.

Wall-clock figures on a shared VM move with the host (bench/run.py reports the steal of each
scenario); an instruction count does not: the same code, input and hash seed give the same
count whatever else the machine is doing. This counts what one binary-mode CloudEvent with a
1 KiB JSON body costs from the bytes of its request to the bytes of its 202: Kanal's HTTP
server, the ingress app (parse, validate, route, metrics), the Kafka record and aiokafka's
batch building. Sockets and the broker are left out: the requests go straight into the server's
protocol objects (64, as `wrk -c64`), and the producer's sends complete at once. Baseline: the
same server answering 202 with no other work (the app of bench/hello_http.py).

    python bench/instructions.py [--requests 3200] [--tracing | --deduplication]

`--tracing` counts the ingress with tracing off, and on with a request whose trace is recorded and
one whose trace is not (the requests carry no traceparent, so the ingress decides: sampling ratio
1, then 0; the spans are exported over OTLP/HTTP to bench/sink.py on loopback). It prints the
three and what tracing on at 1% costs, 0.99 of the one plus 0.01 of the other: exactly 1%, where
a random draw in a run of a few thousand requests would record 32 give or take 6.

`--deduplication` counts the ingress with the Broker deduplicating (a window of 10 minutes, every
id new, so every event is checked, claimed, stored and indexed) against the same Broker without,
the follower standing in as always fresh: what deciding costs the ingress's Python path, with
the follower's rounds and reads of Kafka left out.

Each figure is (instructions for N requests - instructions for none) / N, so start-up and
imports cancel out. Needs valgrind; takes about a minute per figure. Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import callgrind_instructions, start_sink  # noqa: E402 (after the path is set)

from ingress.http import App, HttpServer  # noqa: E402

CONNECTIONS = 64
BODY = b'{"data":"' + b"x" * 1012 + b'"}'
TRACING: Any = None  # the traced ingress's Tracing, flushed at the end of the run


def request(index: int) -> bytes:
    return (
        b"POST /bench/default HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: %d\r\n"
        b"Content-Type: application/json\r\nCe-Specversion: 1.0\r\nCe-Type: bench.event\r\n"
        b"Ce-Source: bench\r\nCe-Id: %d\r\n\r\n" % (len(BODY), index)
    ) + BODY


class StandInTransport(asyncio.Transport):
    """Takes the server's writes and counts them; reading is never paused for long here."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class AckingProducer:
    """aiokafka's own batch builder; each batch acknowledged as soon as it is handed over."""

    def __init__(self) -> None:
        from aiokafka import AIOKafkaProducer

        # Never started, so never connects: only its batch builder is used.
        self._real = AIOKafkaProducer(
            bootstrap_servers="127.0.0.1:9", acks="all", linger_ms=0, enable_idempotence=False
        )

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(10))

    def create_batch(self) -> object:
        return self._real.create_batch()

    async def send_batch(self, batch: object, topic: str, partition: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class FreshFollower:
    """A follower whose index is always fresh enough: no request waits for a round."""

    fresh_until = float("inf")

    def synced(self, arrived: float) -> None:
        return None


def warm_up(tracing: Any) -> None:
    """One span sent before the count, in the run of none too: what the first export alone costs
    (the exporter's lazy imports, its connection) is start-up, not a request's."""
    from channel.tracing import SpanKind

    tracing.span("warm-up", SpanKind.INTERNAL, None, {}).end()
    tracing.flush()


def app(kind: str) -> App:
    if kind == "hello":
        from hello_http import HelloApp

        return HelloApp()
    from channel.producer import KafkaEventSink
    from channel.settings import Settings
    from ingress.app import IngressApp
    from ingress.routing import Route

    sink = KafkaEventSink(AckingProducer(), 5.0)  # aiokafka is untyped: any stand-in passes
    settings = Settings()
    ingress = IngressApp(settings, sink, ready=lambda: True)
    if settings.ingress_event_types_max > 0:
        # Event discovery counts every stored event, as the ingress service has it by default.
        from ingress.eventtypes import EventTypeRecorder

        ingress.event_types = EventTypeRecorder(settings.ingress_event_types_max, "bench")
    ingress.routes = {("broker", "bench", "default"): Route("broker", "bench", "default", "bench.topic")}
    if kind == "dedup":  # the Broker deduplicating, the follower always fresh (--deduplication)
        from ingress.dedup import Deduplicator
        from ingress.dedup_index import IdIndex, Owner

        index = IdIndex(settings.ingress_deduplication_max_ids)
        index.set_windows({"bench.topic": (Owner("broker", "bench", "default"), 600.0)})
        ingress.dedup = Deduplicator(index, FreshFollower(), sink, timeout=5.0)
        ingress.routes = {
            ("broker", "bench", "default"): Route("broker", "bench", "default", "bench.topic", 600.0)
        }
    if kind.startswith("traced-"):  # tracing on, every trace (1) or none (0) recorded (--tracing)
        global TRACING
        from channel.tracing import Tracing
        from ingress.tracing import IngressTracer

        ratio = float(kind.removeprefix("traced-"))
        # A queue that holds every span of the run: none dropped, all of them exported.
        TRACING = Tracing(Settings(tracing_sampling_ratio=ratio, tracing_max_queue_size=1_000_000), "ingress")
        ingress.tracer = IngressTracer(TRACING)
        warm_up(TRACING)
    return ingress


async def drive(kind: str, count: int) -> None:
    server = HttpServer(app(kind), "127.0.0.1", 0)
    connections = []
    for _ in range(CONNECTIONS):
        protocol, transport = server.protocol(), StandInTransport()
        protocol.connection_made(transport)
        connections.append((protocol, transport))
    requests = [request(i) for i in range(count)]
    for i, data in enumerate(requests):
        connections[i % CONNECTIONS][0].data_received(data)
        if i % CONNECTIONS == CONNECTIONS - 1:  # a round on every connection: let answers go out
            for _ in range(4):
                await asyncio.sleep(0)
    for _ in range(4):
        await asyncio.sleep(0)
    if TRACING is not None:
        TRACING.shutdown()  # the spans' export is part of the cost
    answered = sum(transport.writes for _, transport in connections)
    if answered != count:
        raise SystemExit(f"{answered} of {count} requests answered")


def instructions(kind: str, count: int) -> int:
    """Instructions callgrind counts for a whole run of `--inner KIND COUNT`."""
    return callgrind_instructions([sys.executable, __file__, "--inner", kind, str(count)], f"{kind}, {count}")


def per_request(kind: str, count: int) -> float:
    return (instructions(kind, count) - instructions(kind, 0)) / count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--tracing", action="store_true", help="tracing off against on at 1%%")
    parser.add_argument("--deduplication", action="store_true", help="deduplication off against on")
    parser.add_argument("--inner", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        import uvloop

        uvloop.run(drive(args.inner[0], int(args.inner[1])))
        return 0
    if args.tracing:
        return tracing_cost(args.requests)
    if args.deduplication:
        off, on = per_request("ingress", args.requests), per_request("dedup", args.requests)
        print(f"ingress, 1 KiB binary event -> 202, deduplication off: {off:,.0f} instructions per request")
        print(f"the same, the Broker deduplicating (every id new): {on:,.0f} instructions per request")
        print(f"ratio {on / off:.3f}: deciding costs {on - off:,.0f} per request")
        return 0
    ingress = per_request("ingress", args.requests)
    hello = per_request("hello", args.requests)
    print(f"ingress, 1 KiB binary event -> 202: {ingress:,.0f} instructions per request")
    print(f"baseline, the same server answering 202 alone: {hello:,.0f} instructions per request")
    print(f"ratio {ingress / hello:.2f}; the ingress's own work: {ingress - hello:,.0f} per request")
    return 0


def tracing_cost(count: int) -> int:
    """The ingress with tracing off and on at 1%, in one run, exporting to bench/sink.py."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = start_sink(port)
    try:
        os.environ["KANAL_TRACING_ENDPOINT"] = f"http://127.0.0.1:{port}"
        off = per_request("ingress", count)
        unsampled = per_request("traced-0", count)
        sampled = per_request("traced-1", count)
    finally:
        sink.terminate()
        sink.wait(10)
    on = 0.99 * unsampled + 0.01 * sampled
    print(f"ingress, tracing off: {off:,.0f} instructions per request")
    print(f"ingress, tracing on, trace not recorded: {unsampled:,.0f}; recorded: {sampled:,.0f}")
    print(f"ingress, tracing on at 1%: {on:,.0f} instructions per request; ratio on/off {on / off:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
