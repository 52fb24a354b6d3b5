"""Every Kanal benchmark in one run, each figure beside a baseline measured in the same run.

    python bench/run.py [--quick] [--only SCENARIO ...] [--broker embedded|apache|both] [--out DIR]

Each scenario runs on each broker in turn (`--broker`, both by default): the embedded one
(Tansu, with the settings `kanal dev` gives Kanal there) and Apache Kafka (one KRaft node, the
version deploy/kafka/pom.xml pins, Kanal with its defaults), a fresh broker for each, and every
baseline on the same broker with the same client settings. Each broker's figures are reported
against its own targets. Scenarios (loopback only, bounded in count and time):

- ingress     wrk -t1 -c64 POSTing binary-mode CloudEvents (1 KiB and 20 KiB JSON) to
              `kanal ingress` (acks=all) vs a bare ASGI app on the same uvicorn+httptools stack;
              Knative's published 2,000 events/s of 20 KB per receiver replica as a reference row;
              ingress latency at a fixed 5,000 events/s (open loop, bench/loadgen.py).
- dispatcher  N events pre-loaded into a Broker's topic (bare aiokafka producer, the ingress's
              record format), then `kanal dispatcher` with one Trigger to a counting sink
              (bench/sink.py) vs a bare aiohttp POST loop, 64 in flight, to the same sink; the
              Kafka rows compare ingress->topic with the bare producer and topic->dispatcher
              with a bare aiokafka consumer reading the same records.
- latency     ingress-accept -> sink-receipt percentiles at 1,000 and 5,000 events/s.
- triggers    1, 10, 100, 200 Triggers on one Broker, each an exact filter on one of N types,
              delivered events/s vs the 1-Trigger case, and the dispatcher's peak RSS.
Peak RSS (VmHWM) of every component is reported from the runs above, and for each scenario the
host's steal and the broker process's share of the cores (the JVM's on Apache Kafka).

The full run writes bench/results/results.md, results.png and results.json (the raw rows;
`--render DIR` draws the first two again from it); a `--quick` or `--only` run writes to
/tmp/kanal-bench-results unless `--out` says otherwise, so it never replaces the full results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import (
    BACKENDS,
    DEFAULT_FETCH_WAIT_MS,
    ROOT,
    Backend,
    Bench,
    BrokerUsage,
    broker,
    cpu_jiffies,
    trigger,
    wrk,
)
from report import (
    Row,
    Target,
    by_broker,
    console_table,
    load_json,
    machine,
    save_json,
    write_markdown,
    write_png,
)

from channel.embedded import free_port
from channel.kafka import broker_topic

BENCH = ROOT / "bench"
NAMESPACE = "bench"
KNATIVE_20KB_PER_REPLICA = 2_000.0  # Knative's published receiver figure: events/s of 20 KB, one CPU
TRIGGER_COUNTS = (1, 10, 100, 200)
APPLY_CHUNK = 8


@dataclass(frozen=True, slots=True)
class Sizes:
    wrk_seconds: int
    latency_seconds: int
    dispatcher_events: int
    trigger_events: int
    delivery_timeout: float


# Enough events for each Trigger count to deliver for several seconds at the dispatcher's rate
# (over 10,000 ev/s with one Trigger), so start-up is not most of what is measured.
FULL = Sizes(
    wrk_seconds=10, latency_seconds=10, dispatcher_events=50_000, trigger_events=60_000, delivery_timeout=180
)
QUICK = Sizes(
    wrk_seconds=3, latency_seconds=3, dispatcher_events=10_000, trigger_events=12_000, delivery_timeout=60
)


@dataclass(frozen=True, slots=True)
class Targets:
    """What one broker's figures are reported against; None where there is no such target."""

    ingress_rate: float | None  # 1 KiB events/s
    ingress_ratio: float  # of bare ASGI
    ingress_p99_ms: float | None  # at 5,000 events/s
    dispatcher_rate: float | None  # one Trigger
    dispatcher_ratio: float  # of the bare aiohttp loop
    triggers_ratio: float  # 200 Triggers of one
    triggers_rss_mib: float  # the dispatcher's peak at 200 Triggers
    e2e_p99_ms: float  # at 1,000 events/s


TARGETS = {
    "embedded": Targets(20_000, 0.5, 10, 6_000, 0.7, 0.5, 300, 25),
    # Same-run ratios on one node; Kafka answers a fetch as soon as data arrives, so end-to-end
    # latency should beat the embedded broker's.
    "apache": Targets(None, 0.5, None, None, 1.0, 0.5, 300, 10),
}


class Results:
    """One broker's rows in the order they are measured, plus figures one scenario hands to
    another, and what its brokers took during the scenario running now."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.targets = TARGETS[backend.name]
        self.rows: list[Row] = []
        self.figures: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self.broker_usage: list[BrokerUsage] = []

    def add(self, row: Row) -> None:
        row.broker = self.backend.label
        self.rows.append(row)
        print(
            f"  [{self.backend.name}] {row.scenario}: {row.measure}: {row.value:,.1f} {row.unit}"
            + (f" (baseline {row.baseline:,.1f}, ratio {row.ratio:.2f})" if row.ratio else "")
            + (f" {row.verdict}" if row.verdict else ""),
            flush=True,
        )

    def record(self, bench: Bench) -> None:
        """Peak RSS of the processes stopped so far, and the broker's CPU time until now."""
        usage = bench.broker_usage()
        self.broker_usage.append(usage)
        for name, mib in [*bench.peaks.items(), ("broker", usage.peak_rss_mib)]:
            self.peaks[name] = max(self.peaks.get(name, 0.0), mib)


# ---- process helpers -------------------------------------------------------------------------


def run_json(args: list[str], timeout: float) -> dict[str, float]:
    """Run a bench tool in its own process; its last stdout line is a JSON object."""
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip()[-800:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def http(method: str, url: str) -> dict[str, float]:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else {}


class Sink:
    """The counting sink process (bench/sink.py) of one Bench."""

    def __init__(self, bench: Bench) -> None:
        self.port = free_port()
        bench.start(
            "sink",
            "--raw",
            sys.executable,
            str(BENCH / "sink.py"),
            str(self.port),
            ready=f"http://127.0.0.1:{self.port}/healthz",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stats(self) -> dict[str, float]:
        return http("GET", self.url + "stats")

    def reset(self) -> None:
        http("DELETE", self.url + "stats")

    def wait(self, count: int, timeout: float, stall: float = 30.0) -> dict[str, float]:
        """Poll until `count` events arrived, `timeout` passed, or nothing arrived for `stall` s."""
        deadline = time.monotonic() + timeout
        seen, progress = -1, time.monotonic()
        while True:
            stats = self.stats()
            now = time.monotonic()
            if stats["count"] != seen:
                seen, progress = int(stats["count"]), now
            if seen >= count or now > deadline or now - progress > stall:
                return stats
            time.sleep(0.2)


def wait_ready(bench: Bench, kind: str, names: set[str], timeout: float = 120.0) -> None:
    """Wait until the controller reports every named resource Ready."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{bench.ports['controller']}/v1/resources/{kind}?namespace={NAMESPACE}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bench.token}"})
    ready: set[str] = set()
    while time.monotonic() < deadline:
        items = json.loads(urllib.request.urlopen(request, timeout=10).read())["items"]
        ready = {
            item["metadata"]["name"]
            for item in items
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in item.get("status", {}).get("conditions", [])
            )
        }
        if names <= ready:
            return
        time.sleep(0.25)
    raise RuntimeError(f"{kind} not Ready within {timeout}s: {sorted(names - ready)[:5]}")


def delivered_rate(stats: dict[str, float]) -> float:
    span = stats["last"] - stats["first"]
    return stats["count"] / span if span > 0 else float("nan")


def latency_row(scenario: str, measure: str, p: dict[str, float], target_ms: float | None) -> Row:
    targets = [Target(f"p99 < {target_ms:g} ms", p["p99_ms"] < target_ms)] if target_ms else []
    return Row(
        scenario,
        measure,
        p["p99_ms"],
        "ms",
        targets=targets,
        percentiles={k: p[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
    )


def bare_producer_args(backend: Backend) -> list[str]:
    """bench/kafka_bare.py's flags for producers set as Kanal's are on `backend`."""
    return ["--idempotence"] if backend.idempotence else []


def loadgen(url: str, rate: int, seconds: int, *, stamp: bool = False) -> dict[str, float]:
    args = [
        str(BENCH / "loadgen.py"),
        url,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--connections",
        "64",
    ]
    return run_json([*args, "--stamp"] if stamp else args, timeout=seconds * 10 + 60)


# ---- scenarios --------------------------------------------------------------------------------


INGRESS_TURNS = 3


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median requests/s."""
    return sorted(runs, key=lambda run: run["rps"])[len(runs) // 2]


def scenario_ingress(sizes: Sizes, out: Results) -> None:
    seconds = sizes.wrk_seconds
    with Bench(out.backend) as bench:
        port = free_port()
        bench.start("hello-asgi", "--raw", sys.executable, str(BENCH / "hello_asgi.py"), str(port))
        bare = f"http://127.0.0.1:{port}/"
        # The ingress runs on its own HTTP server, not uvicorn: the same server answering 202
        # with nothing else to do shows what Kanal's own work costs on top of it.
        port = free_port()
        bench.start("hello-http", "--raw", sys.executable, str(BENCH / "hello_http.py"), str(port))
        own = f"http://127.0.0.1:{port}/"
        bench.start_component("controller")
        bench.start_component("ingress")
        bench.apply([broker(NAMESPACE, "default")])
        wait_ready(bench, "brokers", {"default"})
        url = f"http://127.0.0.1:{bench.ports['ingress']}/{NAMESPACE}/default"
        for warm in (bare, own, url):
            wrk(warm, seconds=2)
        # Latency first: the embedded broker keeps everything written in memory (over 1 GiB after
        # the throughput runs) and answers more slowly as it grows, which is the broker's cost,
        # not the ingress's.
        base_latency = loadgen(bare, 5000, sizes.latency_seconds)
        latency = loadgen(url, 5000, sizes.latency_seconds)
        # The 1 KiB figures in turns (bare ASGI, Kanal's server bare, Kanal) and the median of
        # each: the host's speed drifts within a run, and a ratio of figures taken minutes apart
        # would measure the drift.
        turns: dict[str, list[dict[str, float]]] = {bare: [], own: [], url: []}
        for _ in range(INGRESS_TURNS):
            for target, runs in turns.items():
                runs.append(wrk(target, seconds=max(2, seconds // 2)))
        base = {1024: _median_run(turns[bare]), 20 * 1024: wrk(bare, seconds=seconds, body_bytes=20 * 1024)}
        own_1k = _median_run(turns[own])["rps"]
        kanal = {1024: _median_run(turns[url]), 20 * 1024: wrk(url, seconds=seconds, body_bytes=20 * 1024)}
        bench.stop("ingress")
        bench.stop("controller")
        out.record(bench)

    k1, b1 = kanal[1024]["rps"], base[1024]["rps"]
    out.figures["ingress_1k"] = k1
    goal = out.targets
    targets = (
        [Target(f"≥ {goal.ingress_rate:,.0f} ev/s", k1 >= goal.ingress_rate)] if goal.ingress_rate else []
    )
    targets.append(Target(f"≥ {goal.ingress_ratio:.1f} of bare", k1 >= goal.ingress_ratio * b1))
    out.add(
        Row(
            "ingress",
            "1 KiB, 64 conns, acks=all",
            k1,
            "ev/s",
            "bare ASGI",
            b1,
            targets,
            note=(
                f"median of {INGRESS_TURNS} turns, Kanal "
                + " / ".join(f"{r['rps']:,.0f}" for r in turns[url])
                + ", bare "
                + " / ".join(f"{r['rps']:,.0f}" for r in turns[bare])
                + f"; non-2xx {sum(r['non_2xx'] for r in turns[url]):.0f}; Kanal's HTTP server bare: "
                f"{own_1k:,.0f}/s, ratio {k1 / own_1k:.2f}"
            ),
        )
    )
    out.figures["ingress_own_http_1k"] = own_1k
    k20, b20 = kanal[20 * 1024]["rps"], base[20 * 1024]["rps"]
    out.add(
        Row(
            "ingress",
            "20 KiB, 64 conns, acks=all",
            k20,
            "ev/s",
            "bare ASGI",
            b20,
            note=f"non-2xx {kanal[20 * 1024]['non_2xx']:.0f}",
        )
    )
    out.add(
        Row(
            "ingress",
            "20 KiB vs Knative's published figure",
            k20,
            "ev/s",
            "Knative 20 KB per replica, 1 CPU",
            KNATIVE_20KB_PER_REPLICA,
            note="reference, other hardware",
        )
    )
    row = latency_row("ingress", "latency at 5,000 ev/s (1 KiB)", latency, goal.ingress_p99_ms)
    row.baseline_name, row.baseline = "bare ASGI, p99", base_latency["p99_ms"]
    row.note = f"achieved {latency['achieved_rate']:,.0f}/s, errors {latency['errors']:.0f}"
    out.add(row)


def scenario_dispatcher(sizes: Sizes, out: Results) -> None:
    count = sizes.dispatcher_events
    with Bench(out.backend) as bench:
        sink = Sink(bench)
        bench.start_component("controller")
        bench.apply([broker(NAMESPACE, "default"), trigger(NAMESPACE, "all", "default", sink.url)])
        wait_ready(bench, "triggers", {"all"})
        bootstrap, topic = bench.kafka.bootstrap_servers, broker_topic(NAMESPACE, "default")

        post = run_json([str(BENCH / "postloop.py"), sink.url, "--count", str(count)], timeout=300)
        sink.reset()
        produce = [str(BENCH / "kafka_bare.py"), "produce", bootstrap, topic, "--count", str(count)]
        produced = run_json([*produce, *bare_producer_args(out.backend)], timeout=300)
        consumed = run_json(
            [str(BENCH / "kafka_bare.py"), "consume", bootstrap, topic, "--count", str(count)], timeout=300
        )

        started = time.monotonic()
        bench.start("dispatcher")
        stats = sink.wait(count, sizes.delivery_timeout)
        wall = time.monotonic() - started
        bench.stop("dispatcher")
        bench.stop("controller")
        out.record(bench)

    rate = delivered_rate(stats)
    note = f"{stats['count']:,.0f} of {count:,} delivered, {wall:.0f} s from process start"
    goal = out.targets
    targets = (
        [Target(f"≥ {goal.dispatcher_rate:,.0f} ev/s", rate >= goal.dispatcher_rate)]
        if goal.dispatcher_rate
        else []
    )
    targets.append(
        Target(f"≥ {goal.dispatcher_ratio:.1f} of bare", rate >= goal.dispatcher_ratio * post["rate"])
    )
    out.add(
        Row(
            "dispatcher",
            "1 Trigger, 1 KiB, pre-loaded topic",
            rate,
            "ev/s",
            "bare aiohttp POST loop",
            post["rate"],
            targets,
            note=note,
        )
    )
    if "ingress_1k" in out.figures:
        out.add(
            Row(
                "kafka",
                "produce: ingress -> topic (HTTP, 1 KiB)",
                out.figures["ingress_1k"],
                "ev/s",
                "bare aiokafka send, acks=all",
                produced["rate"],
            )
        )
    else:
        out.add(
            Row(
                "kafka",
                "bare aiokafka send, acks=all (1 KiB)",
                produced["rate"],
                "ev/s",
                note="run the ingress scenario for the Kanal figure",
            )
        )
    out.add(
        Row(
            "kafka",
            "consume: topic -> dispatcher -> sink",
            rate,
            "ev/s",
            "bare aiokafka consumer",
            consumed["rate"],
        )
    )


def bare_latency(bench: Bench, rate: int, seconds: int, fetch_max_wait_ms: int) -> dict[str, float]:
    topic = f"bench.bare.{rate}.{fetch_max_wait_ms}"
    idempotence = bare_producer_args(bench.backend)
    return run_json(
        [
            str(BENCH / "kafka_bare.py"),
            "latency",
            bench.kafka.bootstrap_servers,
            topic,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--fetch-max-wait-ms",
            str(fetch_max_wait_ms),
            *idempotence,
        ],
        timeout=seconds * 10 + 60,
    )


def scenario_latency(sizes: Sizes, out: Results) -> None:
    rates = (1000, 5000)
    # Kanal and the baselines each on a fresh broker of their own, the lower rate first, so
    # neither meets a broker already holding the other's records. The embedded broker's memory
    # storage has no index: each fetch that finds new data lists every stored batch of the
    # partition, so its consumers slow as a topic grows.
    with Bench(out.backend) as bench:
        sink = Sink(bench)
        for name in ("controller", "ingress", "dispatcher"):
            bench.start_component(name)
        bench.apply([broker(NAMESPACE, "default"), trigger(NAMESPACE, "all", "default", sink.url)])
        wait_ready(bench, "triggers", {"all"})
        url = f"http://127.0.0.1:{bench.ports['ingress']}/{NAMESPACE}/default"
        warm = loadgen(url, 200, 2)
        sink.wait(int(warm["requests"]), 60)
        results = {}
        for rate in rates:
            sink.reset()
            sent = loadgen(url, rate, sizes.latency_seconds, stamp=True)
            received = sink.wait(int(sent["requests"]), 60, stall=15)
            results[rate] = (sent, received)
        for name in ("ingress", "dispatcher", "controller"):
            bench.stop(name)
        out.record(bench)
    event_wait = out.backend.event_fetch_wait_ms
    with Bench(out.backend) as bench:
        # A bare aiokafka producer and consumer with the fetch wait Kanal's event reads are given
        # on this broker, and (on the embedded one, where they differ) with aiokafka's default,
        # Kanal's own, to show what that setting is worth.
        waits = tuple(dict.fromkeys((event_wait, DEFAULT_FETCH_WAIT_MS)))
        bare = {
            (rate, wait): bare_latency(bench, rate, sizes.latency_seconds, wait)
            for rate in rates
            for wait in waits
        }
        out.record(bench)

    for rate, (sent, received) in results.items():
        target = out.targets.e2e_p99_ms if rate == 1000 else None
        row = latency_row("e2e", f"ingress-accept -> sink at {rate:,} ev/s", received, target)
        row.note = f"{received['stamped']:,.0f} of {sent['requests']:,.0f} received"
        row.baseline_name = f"bare aiokafka produce -> consume ({event_wait} ms fetch wait), p99"
        row.baseline = bare[rate, event_wait]["p99_ms"]
        out.add(row)
        for wait in waits:
            plain = latency_row(
                "e2e",
                f"bare aiokafka produce -> consume at {rate:,} ev/s, {wait} ms fetch wait",
                bare[rate, wait],
                None,
            )
            plain.note = "the baseline" if wait == event_wait else "aiokafka's default fetch wait"
            out.add(plain)
        ingress = latency_row("e2e", f"ingress response at {rate:,} ev/s, dispatcher running", sent, None)
        ingress.note = f"achieved {sent['achieved_rate']:,.0f}/s, errors {sent['errors']:.0f}"
        out.add(ingress)


def scenario_triggers(sizes: Sizes, out: Results) -> None:
    count = sizes.trigger_events
    rates: dict[int, float] = {}
    for n in TRIGGER_COUNTS:
        with Bench(out.backend) as bench:
            sink = Sink(bench)
            bench.start_component("controller")
            names = {f"t{i}" for i in range(n)}
            bench.apply([broker(NAMESPACE, "default")])
            # The controller writes one apply as one Kafka batch (16 KiB, about 20 Triggers at most).
            for first in range(0, n, APPLY_CHUNK):
                bench.apply(
                    [
                        trigger(
                            NAMESPACE, f"t{i}", "default", sink.url, [{"exact": {"type": f"bench.type.{i}"}}]
                        )
                        for i in range(first, min(n, first + APPLY_CHUNK))
                    ]
                )
            wait_ready(bench, "triggers", names)
            run_json(
                [
                    str(BENCH / "kafka_bare.py"),
                    "produce",
                    bench.kafka.bootstrap_servers,
                    broker_topic(NAMESPACE, "default"),
                    "--count",
                    str(count),
                    "--types",
                    str(n),
                    *bare_producer_args(out.backend),
                ],
                timeout=300,
            )
            started = time.monotonic()
            bench.start("dispatcher")
            stats = sink.wait(count, sizes.delivery_timeout)
            wall = time.monotonic() - started
            bench.stop("dispatcher")
            bench.stop("controller")
            out.record(bench)
            rss = bench.peaks.get("dispatcher", float("nan"))
        rates[n] = delivered_rate(stats)
        label = f"{n} Trigger{'s' if n > 1 else ''}"
        note = (
            f"{stats['count']:,.0f} of {count:,} delivered to {stats['distinct_types']:.0f} types, "
            f"{wall:.0f} s from process start"
        )
        goal = out.targets
        targets = (
            [Target(f"≥ {goal.triggers_ratio:.1f} of 1 Trigger", rates[n] >= goal.triggers_ratio * rates[1])]
            if n == 200
            else []
        )
        out.add(Row("triggers", label, rates[n], "ev/s", "1 Trigger", rates[1], targets, note=note))
        mem_targets = (
            [Target(f"< {goal.triggers_rss_mib:.0f} MiB", rss < goal.triggers_rss_mib)] if n == 200 else []
        )
        out.add(Row("triggers", f"{label} peak RSS", rss, "MiB", targets=mem_targets, note="dispatcher"))


SCENARIOS: dict[str, Callable[[Sizes, Results], None]] = {
    "ingress": scenario_ingress,
    "dispatcher": scenario_dispatcher,
    "latency": scenario_latency,
    "triggers": scenario_triggers,
}
# Rows derived from other scenarios: asking for them runs those.
ALIASES = {"kafka": ["ingress", "dispatcher"], "rss": list(SCENARIOS)}


def host_steal_row(scenario: str, before: tuple[int, int] | None) -> Row | None:
    """The share of the machine's CPU time the hypervisor took since `before`."""
    after = cpu_jiffies()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return Row(
        scenario,
        "CPU time taken by the host (steal) during this scenario",
        100 * (after[0] - before[0]) / (after[1] - before[1]),
        "%",
        note="of all cores' time; above a few % the figures above are slowed unevenly",
    )


def broker_cpu_row(scenario: str, out: Results) -> Row | None:
    """The broker process's share of all cores while the scenario's brokers ran, start-up excluded."""
    usage = [u for u in out.broker_usage if u.wall_seconds > 0]
    if not usage:
        return None
    cpu, wall = sum(u.cpu_seconds for u in usage), sum(u.wall_seconds for u in usage)
    startup = sum(u.startup_cpu_seconds for u in usage)
    cores = os.cpu_count() or 1
    process, warm = ("the JVM", " and warm-up") if out.backend.name == "apache" else ("Tansu", "")
    brokers = f"{len(usage)} fresh broker{'s' if len(usage) > 1 else ''}"
    return Row(
        scenario,
        "broker's CPU during this scenario",
        100 * cpu / (wall * cores),
        "%",
        note=(
            f"{process}, utime+stime: {cpu:,.1f} s of CPU in {wall:,.0f} s on {brokers}, of all "
            f"{cores} cores' time; start-up{warm} ({startup:,.1f} s of CPU) excluded"
        ),
    )


def print_tables(rows: list[Row]) -> None:
    for label, group in by_broker(rows).items():
        print(f"\n{label}\n" + console_table(group))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs and fewer events")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*SCENARIOS, *ALIASES],
        metavar="SCENARIO",
        help=f"run only these: {', '.join([*SCENARIOS, *ALIASES])}",
    )
    parser.add_argument(
        "--broker",
        choices=[*BACKENDS, "both"],
        default="both",
        help="run on the embedded broker, on Apache Kafka, or on each in turn (default)",
    )
    parser.add_argument("--out", type=Path, help="where results.md, .png and .json go")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="DIR",
        help="only draw DIR/results.md and .png again from DIR/results.json",
    )
    args = parser.parse_args()
    if args.render:
        rows, info, command, seconds = load_json(args.render / "results.json")
        write_markdown(args.render / "results.md", rows, info, command, seconds)
        write_png(args.render / "results.png", rows)
        print_tables(rows)
        return 0
    partial = args.quick or bool(args.only) or args.broker != "both"
    out_dir: Path = args.out or (Path("/tmp/kanal-bench-results") if partial else BENCH / "results")
    wanted = [
        s
        for s in SCENARIOS
        if not args.only or s in args.only or any(s in ALIASES.get(o, []) for o in args.only)
    ]
    backends = list(BACKENDS.values()) if args.broker == "both" else [BACKENDS[args.broker]]
    sizes = QUICK if args.quick else FULL
    info = machine()
    for backend in backends:
        info[f"Broker: {backend.label}"] = backend.describe()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)

    runs = {backend.name: Results(backend) for backend in backends}
    rows: list[Row] = []  # every broker's, in the order they are measured
    began = time.monotonic()
    for name in wanted:
        for backend in backends:
            out = runs[backend.name]
            print(f"\n== {name} on {backend.label}", flush=True)
            first, before = len(out.rows), cpu_jiffies()
            out.broker_usage.clear()
            try:
                SCENARIOS[name](sizes, out)
            except Exception as exc:  # one broken scenario must not lose the others' figures
                traceback.print_exc()
                out.add(Row(name, f"FAILED: {type(exc).__name__}: {str(exc)[:200]}", float("nan"), ""))
            for row in (host_steal_row(name, before), broker_cpu_row(name, out)):
                if row is not None:
                    out.add(row)
            rows += out.rows[first:]
    for out in runs.values():
        for component in ("controller", "ingress", "dispatcher", "broker"):
            if out.peaks.get(component):
                out.add(
                    Row(
                        "memory",
                        f"{component} peak RSS",
                        out.peaks[component],
                        "MiB",
                        note="VmHWM, highest over the scenarios above",
                    )
                )
                rows.append(out.rows[-1])
    elapsed = time.monotonic() - began

    print_tables(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python bench/run.py", *sys.argv[1:]])
    save_json(out_dir / "results.json", rows, info, command, elapsed)
    write_markdown(out_dir / "results.md", rows, info, command, elapsed)
    write_png(out_dir / "results.png", rows)
    print(f"\nwrote {out_dir / 'results.md'} and {out_dir / 'results.png'} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
