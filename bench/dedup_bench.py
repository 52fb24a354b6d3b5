"""Ingress throughput with duplicate-free ingestion on, against the same ingress with it off, in one run.

    python bench/dedup_bench.py [--seconds 6] [--rounds 8] [--broker embedded|apache]

One ingress, two Brokers on it: `plain` without annotations and `dedup` with
`kanal.dev/deduplication-window: PT10M`. wrk -t1 -c64 posts binary-mode CloudEvents of a 1 KiB
JSON body to each in rounds of two turns (plain then dedup, then dedup then plain, and so on),
every event with an id never sent before (bench/post.lua with ID_PREFIX), so every event with
deduplication on is a miss: checked against the index and stored, the most it costs (with the
default staleness bound the follower's rounds run beside the requests;
KANAL_INGRESS_DEDUPLICATION_MAX_STALENESS=0 in the environment makes every new event wait for
one, the strict mode).

The ratio (target: at least 0.8) is the median over the rounds of on / off within the round:
the two turns of a round run back to back, so the host's speed, which drifts by a quarter or
more from one turn to the next on a shared VM, moves both alike, and the broker's log has
grown alike for each. It also prints every turn, the median of each Broker's turns and the
ratio of those medians, and the ingress's peak RSS.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from harness import BACKENDS, Bench, machine, peak_rss_mib, wait_ok, wrk


def _broker(name: str, window: str | None) -> dict[str, object]:
    metadata: dict[str, object] = {"name": name, "namespace": "bench"}
    if window is not None:
        metadata["annotations"] = {"kanal.dev/deduplication-window": window}
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": metadata}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--broker", choices=sorted(BACKENDS), default="embedded")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"plain": [], "dedup": []}
    errors = dict.fromkeys(figures, 0)
    with Bench(BACKENDS[args.broker]) as bench:
        bench.start_component("controller")
        ingress = bench.start_component("ingress")
        bench.apply([_broker("plain", None), _broker("dedup", "PT10M")])
        base = f"http://127.0.0.1:{bench.ports['ingress']}/bench"
        wait_ok(f"http://127.0.0.1:{bench.ports['ingress']}/readyz")
        time.sleep(2.5)  # the routes follow the resource log
        for name in figures:  # warm-up
            wrk(f"{base}/{name}", seconds=2, id_prefix=uuid.uuid4().hex[:8])
        for round_ in range(args.rounds):
            # plain, dedup, dedup, plain, ...: the broker slows as its log grows (the embedded
            # one most), so neither Broker always goes second
            for name in list(figures) if round_ % 2 == 0 else reversed(list(figures)):
                result = wrk(f"{base}/{name}", seconds=args.seconds, id_prefix=uuid.uuid4().hex[:8])
                figures[name].append(result["rps"])
                errors[name] += int(result["non_2xx"])
        rss = peak_rss_mib(ingress.pid)
    off, on = statistics.median(figures["plain"]), statistics.median(figures["dedup"])
    paired = [d / p for p, d in zip(figures["plain"], figures["dedup"], strict=True)]
    print(f"\nMachine: {machine()}; broker: {bench.backend.label}\n")
    print("| round | deduplication off, events/s | deduplication on (PT10M), events/s | on / off |")
    print("|---|---|---|---|")
    for number, (p, d, ratio) in enumerate(zip(figures["plain"], figures["dedup"], paired, strict=True), 1):
        print(f"| {number} | {p:,.0f} | {d:,.0f} | {ratio:.2f} |")
    print(
        f"| median of the turns | {off:,.0f} (non-202: {errors['plain']}) "
        f"| {on:,.0f} (non-202: {errors['dedup']}) | {on / off:.2f} |"
    )
    print(
        f"\nIngress events/s (1 KiB, 64 connections, acks=all), deduplication on / off, the median "
        f"over {len(paired)} rounds: **{statistics.median(paired):.2f}** (target >= 0.8). "
        f"Ingress peak RSS {rss:.0f} MiB."
    )


if __name__ == "__main__":
    main()
