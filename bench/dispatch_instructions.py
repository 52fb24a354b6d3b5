"""Instructions per delivery through the dispatcher's Python path, counted by callgrind.

The dispatcher's counterpart of bench/instructions.py, for the same reason: on a shared VM a
wall-clock figure moves with the host, an instruction count much less. This counts what one
delivery of a 1 KiB binary-mode event costs the dispatcher from `Dispatcher.deliver` to its
outcome: the plan's headers, the HTTP request written by Kanal's client (with the destination
policy the service builds from its settings), the answer read and classified, the metrics. Kafka
is left out (the consumer and its commits are not in this path). The subscriber is bench/sink.py
in a process of its own on loopback, which callgrind does not count; 64 deliveries are in
flight at a time, as the dispatcher keeps many.

    python bench/dispatch_instructions.py [--deliveries 3200] [--code DIR]

`--code DIR` counts another checkout's dispatcher with this script (e.g. a worktree of an older
commit), so two versions are compared with one harness. Each figure is (instructions for N
deliveries - instructions for none) / N: start-up and imports cancel out. Sockets make the count
vary a little from run to run (how many events one loop iteration finds), so it is the median
of three. Needs valgrind; prints, asserts nothing.
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

from harness import callgrind_instructions  # noqa: E402 (after the path is set)

IN_FLIGHT = 64
BODY = b'{"data":"' + b"x" * 1012 + b'"}'


async def drive(port: int, count: int) -> None:
    """`count` deliveries to the sink on `port`, IN_FLIGHT at a time (imports the code under test)."""
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
            result = await dispatcher.deliver(plan, event, Source(0, i))
            if result is not Result.DELIVERED:
                raise SystemExit(f"delivery {i}: {result}")

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    await client.close()


def instructions(code: Path, port: int, count: int) -> int:
    """Instructions callgrind counts for one whole `--inner` run of `count` deliveries."""
    os.environ["PYTHONPATH"] = str(code)
    return callgrind_instructions([sys.executable, __file__, "--inner", str(port), str(count)], str(count))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3200)
    parser.add_argument("--code", type=Path, default=BENCH.parent, help="the checkout to count")
    parser.add_argument("--inner", nargs=2, type=int, metavar=("PORT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner:
        port, count = args.inner
        if count:
            asyncio.run(drive(port, count))
        else:  # the same imports and set-up, no delivery
            asyncio.run(drive(port, 0))
        return 0
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(BENCH / "sink.py"), str(port)], cwd=BENCH)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the sink did not start") from None
                time.sleep(0.1)
        code = args.code.resolve()
        empty = statistics.median(instructions(code, port, 0) for _ in range(3))
        full = statistics.median(instructions(code, port, args.deliveries) for _ in range(3))
        per = (full - empty) / args.deliveries
        print(f"{code}: {per:,.0f} instructions per delivery ({args.deliveries} deliveries, median of 3)")
    finally:
        sink.terminate()
        sink.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
