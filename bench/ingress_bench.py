"""Ingress throughput and latency against a bare server on the same HTTP stack, in one run.

The ingress scenario of bench/run.py (which `make bench` runs) measures the same and more; this
script is the ingress alone, with its own `--seconds`.

    python bench/ingress_bench.py [--seconds 10] [--tracing]

1. Baselines: a bare ASGI app on uvicorn+httptools answering 202 (bench/hello_asgi.py), and
   Kanal's own HTTP server (which the ingress runs on) answering 202 (bench/hello_http.py).
2. Kanal: `kanal ingress` writing every event to the embedded broker with acks=all.
Both are loaded by wrk -t1 -c64 with binary-mode CloudEvents of a 1 KiB JSON body (and 20 KiB),
and, before those (the embedded broker slows as its in-memory log grows), the Kanal ingress at a
fixed 5,000 events/s by bench/loadgen.py for latency percentiles.
Prints figures and ratios; asserts nothing (the machine is shared and noisy).

`--tracing` instead loads `kanal ingress` with tracing off and with it on at 1% sampling (spans
sent over OTLP/HTTP to bench/sink.py on loopback), in the order off, on, on, off so that the
broker's slowing as it fills weighs on both alike, and prints each one's mean and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from harness import ROOT, Bench, broker, machine, peak_rss_mib, wait_ok, wrk

from channel.embedded import free_port


def _percentiles(latency: dict[str, float]) -> str:
    return (
        f"p50 {latency['p50_ms']:.1f} ms, p90 {latency['p90_ms']:.1f} ms, "
        f"p99 {latency['p99_ms']:.1f} ms, max {latency['max_ms']:.1f} ms "
        f"(achieved {latency['achieved_rate']:,.0f}/s, errors {latency['errors']:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--tracing", action="store_true", help="tracing off against on at 1%%")
    args = parser.parse_args()
    if args.tracing:
        tracing_cost(args.seconds)
        return
    rows: list[tuple[str, str, str]] = []
    with Bench() as bench:
        port = free_port()
        bench.start("baseline", "--raw", sys.executable, str(ROOT / "bench" / "hello_asgi.py"), str(port))
        wait_ok_post = f"http://127.0.0.1:{port}/"
        import time

        time.sleep(1.0)
        base_1k = wrk(wait_ok_post, seconds=args.seconds)
        base_20k = wrk(wait_ok_post, seconds=args.seconds, body_bytes=20 * 1024)
        bench.stop("baseline")
        own_port = free_port()
        bench.start("own", "--raw", sys.executable, str(ROOT / "bench" / "hello_http.py"), str(own_port))
        time.sleep(1.0)
        own_1k = wrk(f"http://127.0.0.1:{own_port}/", seconds=args.seconds)
        bench.stop("own")

        bench.start_component("controller")
        ingress = bench.start_component("ingress")
        bench.apply([broker("bench", "default")])
        url = f"http://127.0.0.1:{bench.ports['ingress']}/bench/default"
        wait_ok(f"http://127.0.0.1:{bench.ports['ingress']}/readyz")
        time.sleep(2.5)  # the route follows the resource log
        wrk(url, seconds=2)  # warm-up
        # Latency first: the embedded broker keeps what is written in memory and slows as it grows.
        latency = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "loadgen.py"),
                    url,
                    "--rate",
                    "5000",
                    "--seconds",
                    str(args.seconds),
                    "--connections",
                    "64",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=args.seconds * 10 + 60,
            ).stdout
        )
        kanal_1k = wrk(url, seconds=args.seconds)
        kanal_20k = wrk(url, seconds=args.seconds, body_bytes=20 * 1024)
        rss = peak_rss_mib(ingress.pid)

    for label, base, kanal in (("1 KiB", base_1k, kanal_1k), ("20 KiB", base_20k, kanal_20k)):
        rows.append(
            (
                f"ingress events/s, {label}, 64 conns, acks=all",
                f"{kanal['rps']:,.0f} (non-202: {kanal['non_2xx']})",
                f"{base['rps']:,.0f} bare ASGI -> ratio {kanal['rps'] / base['rps']:.2f}",
            )
        )
    rows.append(
        (
            "ingress events/s, 1 KiB, against Kanal's own HTTP server answering 202",
            f"{kanal_1k['rps']:,.0f}",
            f"{own_1k['rps']:,.0f} bare -> ratio {kanal_1k['rps'] / own_1k['rps']:.2f}",
        )
    )
    rows.append(
        (
            "latency at 5,000 events/s (1 KiB)",
            _percentiles(latency),
            "target p99 < 10 ms",
        )
    )
    rows.append(("ingress peak RSS", f"{rss:.0f} MiB", ""))
    print(f"\nMachine: {machine()}\n")
    print("| measure | Kanal | baseline / target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def tracing_cost(seconds: int) -> None:
    """Events/s of the ingress with tracing off and on at 1%, in one run (1 KiB, 64 conns)."""
    import time

    rates: dict[str, list[float]] = {"off": [], "on at 1%": []}
    with Bench() as bench:
        otlp = free_port()
        bench.start("otlp", "--raw", sys.executable, str(ROOT / "bench" / "sink.py"), str(otlp))
        bench.start_component("controller")
        bench.apply([broker("bench", "default")])
        url = f"http://127.0.0.1:{bench.ports['ingress']}/bench/default"
        for mode in ("off", "on at 1%", "on at 1%", "off"):
            bench.env.pop("KANAL_TRACING_ENDPOINT", None)
            if mode != "off":
                bench.env["KANAL_TRACING_ENDPOINT"] = f"http://127.0.0.1:{otlp}"
                bench.env["KANAL_TRACING_SAMPLING_RATIO"] = "0.01"
            bench.start_component("ingress")
            time.sleep(2.5)  # the route follows the resource log
            wrk(url, seconds=2)  # warm-up
            result = wrk(url, seconds=seconds)
            rates[mode].append(result["rps"])
            print(f"tracing {mode}: {result['rps']:,.0f} events/s (non-202: {result['non_2xx']})", flush=True)
            bench.stop("ingress")
    off, on = (sum(rates[mode]) / len(rates[mode]) for mode in ("off", "on at 1%"))
    print(f"\nMachine: {machine()}\n")
    print(f"ingress events/s, 1 KiB, 64 conns: tracing off {off:,.0f}, on at 1% {on:,.0f}")
    print(f"ratio on/off {on / off:.3f}")


if __name__ == "__main__":
    main()
