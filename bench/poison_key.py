"""Poison-key isolation in ordered delivery: what one failing key costs every other key.

    python bench/poison_key.py [--broker embedded|apache] [--seconds 30]

One Broker with a single partition, so every key shares it, and one ordered Trigger
(`kafka.eventing.knative.dev/delivery.order: ordered`) to a subscriber in this process. Events
are posted at 200 a second, their partition keys going round 20 healthy keys and one more,
`poison`. The run has three phases of equal length: all keys healthy; the subscriber answering
503 to every `poison` event (the Trigger retries it 100 times, 0.1 s apart); all healthy again.

Per phase it prints the healthy keys' events delivered per second and their latency from POST
to the subscriber (p50, p99), and the poison key's events delivered and the longest any of them
waited (its held events arrive in the last phase, having waited out the failure). Under per-partition order
every healthy event would wait behind the poison one, so healthy throughput would fall to zero for
the middle phase; under per-key order it should stay at the posted rate, with the latency of
the first phase. The last line is the healthy keys' events/s in the failing phase over the
first phase's (1.0 is full isolation). Loopback only; about a minute in all. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web
from harness import BACKENDS, Bench, broker, free_port, machine, post_at_rate, post_batch

NAMESPACE = "bench"
KEYS = [f"k{i:02d}" for i in range(20)] + ["poison"]
POST_RATE = 200  # events/s
BATCH = 21  # events per POST: one of each key
PHASES = ("healthy", "poison failing", "recovered")


@dataclass
class Subscriber:
    """Takes every event at once, except `poison` ones while `failing`; notes when each arrived."""

    failing: bool = False
    # (arrival, key, latency) of every event accepted
    accepted: list[tuple[float, str, float]] = field(default_factory=list)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        key = request.headers.get("ce-partitionkey", "")
        if key == "poison" and self.failing:
            self.refused += 1
            return web.Response(status=503)
        now = time.time()
        self.accepted.append((time.monotonic(), key, now - float(request.headers.get("ce-sent", now))))
        return web.Response(status=202)


def ordered_trigger(uri: str) -> dict[str, object]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {
            "name": "ordered",
            "namespace": NAMESPACE,
            "annotations": {"kafka.eventing.knative.dev/delivery.order": "ordered"},
        },
        "spec": {
            "broker": "default",
            "subscriber": {"uri": uri},
            "delivery": {"retry": 100, "backoffPolicy": "linear", "backoffDelay": "PT0.1S"},
        },
    }


def batch(first: int) -> list[dict[str, object]]:
    """One event of each key, ids from `first` on, stamped with the time they are sent."""
    sent = f"{time.time():.6f}"
    return [
        {
            "specversion": "1.0",
            "id": f"e{first + i}",
            "type": "bench.poison",
            "source": "bench",
            "partitionkey": key,
            "sent": sent,
            "data": {},
        }
        for i, key in enumerate(KEYS)
    ]


async def measure(bench: Bench, seconds: float) -> tuple[Subscriber, list[tuple[str, float, float]]]:
    subscriber = Subscriber()
    app = web.Application()
    app.router.add_post("/", subscriber.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.to_thread(
            bench.apply, [broker(NAMESPACE, "default"), ordered_trigger(f"http://127.0.0.1:{port}/")]
        )
        ingress = f"http://127.0.0.1:{bench.ports['ingress']}/{NAMESPACE}/default"
        deadline = time.monotonic() + 60
        while not subscriber.accepted:  # ready once an event gets through
            await asyncio.to_thread(post_batch, ingress, batch(-BATCH))
            if time.monotonic() > deadline:
                raise RuntimeError("no event reached the subscriber within 60 s")
            await asyncio.sleep(1.0)
        await asyncio.sleep(1.0)
        subscriber.accepted.clear()
        stop = threading.Event()
        began = time.monotonic()
        poster = asyncio.create_task(
            asyncio.to_thread(post_at_rate, ingress, POST_RATE, BATCH, seconds, stop, batch)
        )
        third = seconds / 3
        phases = [(name, began + i * third, began + (i + 1) * third) for i, name in enumerate(PHASES)]
        try:
            await asyncio.sleep(third)
            subscriber.failing = True
            await asyncio.sleep(third)
            subscriber.failing = False
            await poster
            # The poison key's held events drain once it recovers: wait for them (bounded).
            posted = (seconds * POST_RATE) // BATCH
            for _ in range(150):
                if sum(k == "poison" for _, k, _ in subscriber.accepted) >= posted:
                    break
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await poster
        return subscriber, phases
    finally:
        await runner.cleanup()


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=sorted(BACKENDS), default="embedded")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not 6 <= args.seconds <= 300:
        parser.error("--seconds takes 6 to 300")
    backend = BACKENDS[args.broker]
    os.environ["KANAL_KAFKA_TOPIC_PARTITIONS"] = "1"  # every key on one partition
    with Bench(backend) as bench:
        for name in ("controller", "ingress", "dispatcher"):
            bench.start_component(name)
        subscriber, phases = asyncio.run(measure(bench, args.seconds))
    print(f"poison-key isolation, ordered Trigger, one partition, {backend.label}, {machine()}")
    print(
        f"{'phase':<16} {'healthy/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'poison delivered':>17} {'poison max s':>13}"
    )
    rates = []
    for name, start, end in phases:
        inside = [(k, latency) for at, k, latency in subscriber.accepted if start <= at < end]
        healthy = [latency for k, latency in inside if k != "poison"]
        poison = [latency for k, latency in inside if k == "poison"]
        rates.append(len(healthy) / (end - start))
        print(
            f"{name:<16} {rates[-1]:>10.0f} {_percentile(healthy, 0.5) * 1000:>8.1f}"
            f" {_percentile(healthy, 0.99) * 1000:>8.1f} {len(poison):>17} {max(poison, default=0.0):>13.1f}"
        )
    print(f"503s answered: {subscriber.refused}")
    print(f"healthy keys' events/s while one key fails / while none does: {rates[1] / rates[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
