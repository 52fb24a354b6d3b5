"""Instructions per delivery through the dispatcher's Python path, counted by callgrind.

The dispatcher's counterpart of bench/instructions.py, for the same reason: on a shared VM a
wall-clock figure moves with the host, an instruction count much less. This counts what one
delivery of a 1 KiB binary-mode event costs the dispatcher from `Dispatcher.deliver` to its
outcome: the plan's headers, the HTTP request written by Kanal's client (with the destination
policy the service builds from its settings), the answer read and classified, the metrics. Kafka
is left out (the consumer and its commits are not in this path). The subscriber is bench/sink.py
in a process of its own on loopback, which callgrind does not count; 64 deliveries are in
flight at a time, as the dispatcher keeps many.

    python bench/dispatch_instructions.py [--deliveries 3200] [--code DIR] [--tracing]

`--code DIR` counts another checkout's dispatcher with this script (e.g. a worktree of an older
commit), so two versions are compared with one harness. Each figure is (instructions for N
deliveries - instructions for none) / N: start-up and imports cancel out. Sockets make the count
vary a little from run to run (how many events one loop iteration finds), so it is the median
of three. Needs valgrind; prints, asserts nothing.

`--tracing` counts this checkout's dispatcher on the same events, each with a traceparent and one
in a hundred sampled (as senders that trace at 1% send them), with tracing off (the traceparent
passed on, as it always is) and on (the spans exported over OTLP/HTTP to the sink), and prints
both and the ratio; then the same deliveries'
rate in wall-clock time, outside callgrind (off, on, on, off, 20,000 deliveries each; the Kafka
read is not in it, so the ratio is if anything less kind than the whole dispatcher's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from harness import callgrind_instructions, start_sink  # noqa: E402 (after the path is set)

IN_FLIGHT = 64
BODY = b'{"data":"' + b"x" * 1012 + b'"}'


async def drive(port: int, count: int) -> float:
    """`count` deliveries to the sink on `port`, IN_FLIGHT at a time (imports the code under test);
    the seconds they took, with the spans' export when tracing is on."""
    from channel.events import CloudEvent
    from channel.settings import Settings
    from dispatcher.delivery import HttpPoster
    from dispatcher.dispatch import Dispatcher, Result, Source
    from dispatcher.http import HttpClient
    from dispatcher.plan import Plan
    from dispatcher.retry import RetryPolicy

    settings = Settings()
    if hasattr(settings, "delivery_deny"):  # the destination policy, as the service builds it
        from channel.destinations import DestinationPolicy

        client = HttpClient(policy=DestinationPolicy.from_settings(settings))
    else:  # code from before the policy
        client = HttpClient()
    plan = Plan(
        kind="trigger",
        key="bench/t",
        namespace="bench",
        name="t",
        group="group",
        topic="knative-broker.bench.default",
        created_ms=0,
        subscriber=f"http://127.0.0.1:{port}/",
        reply_to=None,
        reply_topic=None,
        dead_letter=None,
        retry=RetryPolicy(timeout=10.0),
        parent="default",
    )
    traced_events = bool(os.environ.get("KANAL_BENCH_TRACEPARENTS"))  # --tracing, off and on alike
    tracing = None
    if os.environ.get("KANAL_TRACING_ENDPOINT"):  # --tracing: on
        from channel.tracing import Tracing
        from dispatcher.tracing import DispatchTracer

        tracing = Tracing(Settings(tracing_sampling_ratio=0.01), "dispatcher")
        # One span sent before the count, in the run of none too: what the first export alone
        # costs (the exporter's lazy imports, its connection) is start-up, not a delivery's.
        from channel.tracing import SpanKind

        tracing.span("warm-up", SpanKind.INTERNAL, None, {}).end()
        tracing.flush()
        dispatcher = Dispatcher(
            HttpPoster(client),
            replies=None,  # type: ignore[arg-type]
            max_hops=16,
            tracer=DispatchTracer(tracing),
        )
    else:
        dispatcher = Dispatcher(HttpPoster(client), replies=None, max_hops=16)  # type: ignore[arg-type]
    attributes = {
        "specversion": "1.0",
        "type": "bench.event",
        "source": "/bench",
        "datacontenttype": "application/json",
    }
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            event = CloudEvent({**attributes, "id": str(i)}, BODY)
            if not traced_events:
                source = Source(0, i)
            else:  # as senders tracing at 1% send them: every event has one, one in 100 sampled
                flags = "01" if i % 100 == 0 else "00"
                source = Source(0, i, traceparent=f"00-{i + 1:032x}-{i + 1:016x}-{flags}")
            result = await dispatcher.deliver(plan, event, source)
            if result is not Result.DELIVERED:
                raise SystemExit(f"delivery {i}: {result}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    if tracing is not None:
        tracing.shutdown()  # the spans' export is part of the cost
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def instructions(code: Path, port: int, count: int) -> int:
    """Instructions callgrind counts for one whole `--inner` run of `count` deliveries."""
    os.environ["PYTHONPATH"] = str(code)
    return callgrind_instructions([sys.executable, __file__, "--inner", str(port), str(count)], str(count))


def per_delivery(code: Path, port: int, count: int) -> float:
    empty = statistics.median(instructions(code, port, 0) for _ in range(3))
    full = statistics.median(instructions(code, port, count) for _ in range(3))
    return (full - empty) / count


def wall_clock(code: Path, port: int, count: int = 20_000) -> None:
    """Deliveries per second with tracing off and on at 1% (off, on, on, off), outside callgrind."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    endpoint = os.environ.pop("KANAL_TRACING_ENDPOINT")
    for on in (False, True, True, False):
        env = {**os.environ, "PYTHONPATH": str(code), "KANAL_BENCH_WALL": "1"}
        if on:
            env["KANAL_TRACING_ENDPOINT"] = endpoint
        argv = [sys.executable, __file__, "--inner", str(port), str(count)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=600)
        rates[on].append(float(done.stdout.split()[-1]))
        print(f"tracing {'on at 1%' if on else 'off'}: {rates[on][-1]:,.0f} deliveries/s", flush=True)
    off, on_rate = (statistics.mean(rates[mode]) for mode in (False, True))
    print(f"deliveries/s: tracing off {off:,.0f}, on at 1% {on_rate:,.0f}; ratio on/off {on_rate / off:.3f}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3200)
    parser.add_argument("--code", type=Path, default=BENCH.parent, help="the checkout to count")
    parser.add_argument("--tracing", action="store_true", help="tracing off against on at 1%%")
    parser.add_argument("--inner", nargs=2, type=int, metavar=("PORT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        port, count = args.inner
        elapsed = asyncio.run(drive(port, count))  # count 0: the same imports and set-up, no delivery
        if os.environ.get("KANAL_BENCH_WALL"):  # deliveries per second
            print(count / elapsed)
        return 0
    port = free_port()
    sink = start_sink(port)
    try:
        code = args.code.resolve()
        if args.tracing:
            os.environ["KANAL_BENCH_TRACEPARENTS"] = "1"
        per = per_delivery(code, port, args.deliveries)
        print(f"{code}: {per:,.0f} instructions per delivery ({args.deliveries} deliveries, median of 3)")
        if args.tracing:
            os.environ["KANAL_TRACING_ENDPOINT"] = f"http://127.0.0.1:{port}"  # the sink takes the spans
            on = per_delivery(code, port, args.deliveries)
            print(f"tracing on at 1%: {on:,.0f} instructions per delivery; ratio on/off {on / per:.3f}")
            wall_clock(code, port)
    finally:
        sink.terminate()
        sink.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
