"""Adaptive concurrency against a subscriber of limited capacity: events/s and the limit over time.

    python bench/adaptive.py [--broker embedded|apache] [--seconds 36] [--out bench/results]

Two Triggers on one Broker receive the same events, each to a subscriber of its own in this
process. Both subscribers have `slots` requests at a time, each taking 50 ms (10 slots: 200
events/s), and answer 429 at once, without Retry-After, when every slot is taken. One Trigger
has the adaptive limit (the default); the other a fixed limit of 64
(`kanal.dev/adaptive-concurrency: "false"`, `kanal.dev/max-in-flight: "64"`). Both retry a 429
ten times, 50 ms apart. Events are posted at 300 a second, more than the subscribers take, so
both are saturated throughout. For the middle third of the run the subscribers lose 6 of their
10 slots, then get them back, to show the limit coming down and recovering.

Every quarter second it samples each subscriber's accepted and refused counts and each
Trigger's `kanal_dispatcher_concurrency_limit` and `kanal_dispatcher_in_flight` from the
dispatcher's /metrics. It prints a table per phase (events/s accepted, 429s per event
accepted) and draws `adaptive.png` (events/s and limit over time) into `--out`. Loopback only;
about a minute and a half in all.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from harness import BACKENDS, Bench, broker, free_port, machine, post_at_rate, post_batch

NAMESPACE = "bench"
SERVICE = 0.05  # seconds per request
SLOTS = 10  # 200 events/s
DEGRADED = 4  # slots in the middle third
POST_RATE = 300  # events/s posted
BATCH = 30  # events per POST
SAMPLE = 0.25  # seconds between samples
TRIGGERS = ("adaptive", "fixed")


@dataclass
class Subscriber:
    """`slots` requests at a time of SERVICE seconds each; 429 at once beyond them."""

    slots: int = SLOTS
    busy: int = 0
    accepted: int = 0
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if self.busy >= self.slots:
            self.refused += 1
            return web.Response(status=429)
        self.busy += 1
        try:
            await asyncio.sleep(SERVICE)
        finally:
            self.busy -= 1
        self.accepted += 1
        return web.Response(status=202)


@dataclass
class Sample:
    at: float
    accepted: dict[str, int]
    refused: dict[str, int]
    limit: dict[str, float]
    in_flight: dict[str, float]


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end


def trigger(name: str, uri: str, annotations: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
        "spec": {
            "broker": "default",
            "subscriber": {"uri": uri},
            "delivery": {"retry": 10, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"},
        },
    }


def metric(text: str, name: str, trigger_name: str) -> float:
    match = re.search(rf'^{name}\{{[^}}]*trigger="{trigger_name}"[^}}]*\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def batch(first: int) -> list[dict[str, object]]:
    """BATCH events, ids from `first` on."""
    return [
        {"specversion": "1.0", "id": f"e{first + i}", "type": "bench.adaptive", "source": "bench", "data": {}}
        for i in range(BATCH)
    ]


async def measure(bench: Bench, seconds: float) -> Run:
    subscribers = {name: Subscriber() for name in TRIGGERS}
    runners = []
    urls = {}
    for name, subscriber in subscribers.items():
        app = web.Application()
        app.router.add_post("/", subscriber.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{port}/"
    try:
        await asyncio.to_thread(
            bench.apply,
            [
                broker(NAMESPACE, "default"),
                trigger("adaptive", urls["adaptive"], {}),
                trigger(
                    "fixed",
                    urls["fixed"],
                    {"kanal.dev/adaptive-concurrency": "false", "kanal.dev/max-in-flight": "64"},
                ),
            ],
        )
        metrics_url = f"http://127.0.0.1:{bench.ports['dispatcher']}/metrics"
        ingress = f"http://127.0.0.1:{bench.ports['ingress']}/{NAMESPACE}/default"
        # Ready when an event posted reaches both subscribers (the dispatcher reads its topic and
        # the ingress routes to it), so the clock starts with deliveries flowing.
        deadline = time.monotonic() + 60
        while not all(s.accepted for s in subscribers.values()):
            await asyncio.to_thread(post_batch, ingress, batch(-BATCH))  # ids before the run's
            if time.monotonic() > deadline:
                raise RuntimeError("no event reached both subscribers within 60 s")
            await asyncio.sleep(1.0)
        for subscriber in subscribers.values():
            subscriber.accepted = subscriber.refused = 0
        stop = threading.Event()
        poster = asyncio.create_task(
            asyncio.to_thread(post_at_rate, ingress, POST_RATE, BATCH, seconds, stop, batch)
        )
        run = Run()
        began = time.monotonic()
        third = seconds / 3
        run.phases = [
            ("10 slots", 0.0, third),
            ("4 slots", third, 2 * third),
            ("10 slots again", 2 * third, seconds),
        ]
        try:
            while (now := time.monotonic() - began) < seconds:
                slots = DEGRADED if third <= now < 2 * third else SLOTS
                for subscriber in subscribers.values():
                    subscriber.slots = slots
                text = await asyncio.to_thread(_get, metrics_url)
                run.samples.append(
                    Sample(
                        now,
                        {n: s.accepted for n, s in subscribers.items()},
                        {n: s.refused for n, s in subscribers.items()},
                        {n: metric(text, "kanal_dispatcher_concurrency_limit", n) for n in TRIGGERS},
                        {n: metric(text, "kanal_dispatcher_in_flight", n) for n in TRIGGERS},
                    )
                )
                await asyncio.sleep(SAMPLE)
        finally:
            stop.set()
            await poster
        return run
    finally:
        for runner in runners:
            await runner.cleanup()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def phase_rows(run: Run) -> list[tuple[str, str, float, float, float]]:
    """(phase, trigger, events/s accepted, 429s per event accepted, mean limit) per phase."""
    rows = []
    for phase, start, end in run.phases:
        inside = [s for s in run.samples if start + 1.0 <= s.at <= end]  # a second to settle
        if len(inside) < 2:
            continue
        first, last = inside[0], inside[-1]
        span = last.at - first.at
        for name in TRIGGERS:
            accepted = last.accepted[name] - first.accepted[name]
            refused = last.refused[name] - first.refused[name]
            limits = [s.limit[name] for s in inside]
            rows.append((phase, name, accepted / span, refused / max(1, accepted), sum(limits) / len(limits)))
    return rows


def plot(run: Run, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, limit_ax) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    times = [s.at for s in run.samples[1:]]
    for name, colour in zip(TRIGGERS, ("tab:blue", "tab:red"), strict=True):
        rates = [
            (b.accepted[name] - a.accepted[name]) / (b.at - a.at)
            for a, b in zip(run.samples, run.samples[1:], strict=False)
        ]
        refused = [
            (b.refused[name] - a.refused[name]) / (b.at - a.at)
            for a, b in zip(run.samples, run.samples[1:], strict=False)
        ]
        label = "adaptive limit" if name == "adaptive" else "fixed limit 64"
        rate_ax.plot(times, _smooth(rates), color=colour, label=f"{label}: accepted/s")
        rate_ax.plot(times, _smooth(refused), color=colour, linestyle=":", label=f"{label}: 429s/s")
        limit_ax.plot(
            [s.at for s in run.samples],
            [s.limit[name] for s in run.samples],
            color=colour,
            label=label if name == "adaptive" else f"{label} (off this scale)",
        )
    capacity = [
        (start, end, (DEGRADED if i == 1 else SLOTS) / SERVICE)
        for i, (_, start, end) in enumerate(run.phases)
    ]
    for i, (start, end, rate) in enumerate(capacity):
        rate_ax.hlines(rate, start, end, colors="grey", linestyles="--", label="capacity" if i == 0 else None)
        limit_ax.hlines(
            rate * SERVICE, start, end, colors="grey", linestyles="--", label="slots" if i == 0 else None
        )
    rate_ax.set_ylabel("events/s (1 s average)")
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    rate_ax.set_title(title, fontsize="medium")
    limit_ax.set_ylabel("in-flight limit")
    # The fixed limit (64) is far above the slots: show the adaptive one's scale.
    limit_ax.set_ylim(0, 2 * SLOTS)
    limit_ax.set_xlabel("seconds")
    limit_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _smooth(values: list[float], width: int = 4) -> list[float]:
    return [
        sum(values[max(0, i - width + 1) : i + 1]) / len(values[max(0, i - width + 1) : i + 1])
        for i in range(len(values))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--broker", choices=sorted(BACKENDS), default="embedded")
    parser.add_argument("--seconds", type=float, default=36.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if not 6 <= args.seconds <= 300:
        parser.error("--seconds takes 6 to 300")
    backend = BACKENDS[args.broker]
    with Bench(backend) as bench:
        for name in ("controller", "ingress", "dispatcher"):
            bench.start_component(name)
        run = asyncio.run(measure(bench, args.seconds))
    rows = phase_rows(run)
    print(f"adaptive concurrency, {backend.label}, {machine()}")
    print(f"{'phase':<16} {'trigger':<10} {'accepted/s':>10} {'429s per event':>15} {'mean limit':>11}")
    for phase, name, rate, refused, limit in rows:
        print(f"{phase:<16} {name:<10} {rate:>10.0f} {refused:>15.2f} {limit:>11.1f}")
    title = (
        f"Subscriber of {SLOTS} slots x {SERVICE * 1000:.0f} ms (4 in the middle third), 429 beyond; "
        f"{POST_RATE} events/s posted; {backend.label}"
    )
    path = args.out / "adaptive.png"
    plot(run, path, title)
    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
