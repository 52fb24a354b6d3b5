"""Which HTTP server the ingress runs on, decided by measurement in one run.

    python bench/servers.py [--seconds 8] [--turns 3] [--broker embedded|apache] [--out FILE]

The same IngressApp (routing, auth, parsing, the Kafka event sink with acks=all, a real broker)
served by Kanal's own HTTP/1.1 server (`kanal ingress`), by uvicorn with httptools, and by
granian (Rust, on hyper) through ASGI and through its RSGI interface (bench/serve_ingress.py),
each loaded by wrk -t1 -c64 with binary-mode CloudEvents of 1 KiB and of 20 KiB. The servers take
turns (each runs once per turn, the order rotated from turn to turn), so a slow spell of the
shared machine falls on all of them, and each run writes to a Broker of its own (the embedded
broker's writes slow down as a topic grows, which would favour whoever goes first); each figure
is the median of its turns. Prints the table and the ratio of Kanal's own server to the best
library server, and writes them to bench/results/servers.md (or --out). The rule the README
states (keep the own server only at 1.25 times the best library server, and only if it also
passes every abuse test) is applied by people, not by this script.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from harness import BACKENDS, ROOT, Bench, broker, machine, wrk

NAMESPACE = "bench"
SERVERS = ("kanal", "uvicorn", "granian-asgi", "granian-rsgi")
SIZES = (1024, 20 * 1024)


def commit() -> str:
    return (
        subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        or "unknown"
    )


def _start(bench: Bench, server: str) -> str:
    """Start the ingress on `server`; the name its process has in `bench`."""
    if server == "kanal":
        bench.start_component("ingress")
        return "ingress"
    name = f"ingress-{server}"
    ready = f"http://127.0.0.1:{bench.ports['ingress']}/readyz"
    bench.start(name, "--raw", sys.executable, str(ROOT / "bench" / "serve_ingress.py"), server, ready=ready)
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--broker", choices=sorted(BACKENDS), default="embedded")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "servers.md")
    args = parser.parse_args()
    runs: dict[tuple[str, int], list[dict[str, float]]] = {(s, n): [] for s in SERVERS for n in SIZES}
    with Bench(BACKENDS[args.broker]) as bench:
        bench.start_component("controller")
        for turn in range(args.turns):
            shift = turn % len(SERVERS)
            for server in SERVERS[shift:] + SERVERS[:shift]:
                topic = f"{server}-{turn}"
                bench.apply([broker(NAMESPACE, topic)])
                url = f"http://127.0.0.1:{bench.ports['ingress']}/{NAMESPACE}/{topic}"
                name = _start(bench, server)
                wrk(url, seconds=1)  # warm: connections, the producer's first batches
                for size in SIZES:
                    result = wrk(url, seconds=args.seconds, body_bytes=size)
                    if result["non_2xx"]:
                        raise SystemExit(f"{server}: {result['non_2xx']:.0f} answers not 2xx")
                    runs[server, size].append(result)
                    print(
                        f"turn {turn + 1} {server:13} {size // 1024:2} KiB: {result['rps']:9,.0f} ev/s"
                        f"  p99 {result['p99_ms']:6.1f} ms",
                        flush=True,
                    )
                bench.stop(name)
    median = {
        key: (statistics.median(r["rps"] for r in rs), statistics.median(r["p99_ms"] for r in rs))
        for key, rs in runs.items()
    }
    lines = [
        "# The ingress on each HTTP server",
        "",
        f"Produced by `python bench/servers.py --turns {args.turns} --seconds {args.seconds}` "
        f"at commit {commit()}; median of the turns, wrk -t1 -c64, acks=all.",
        "",
        f"- **Machine**: {machine()}",
        f"- **Broker**: {bench.backend.describe()}",
        "",
        f"| server | {' | '.join(f'{n // 1024} KiB ev/s (p99 ms)' for n in SIZES)} |",
        f"|---|{'---:|' * len(SIZES)}",
    ]
    for server in SERVERS:
        cells = " | ".join(f"{median[server, n][0]:,.0f} ({median[server, n][1]:.1f})" for n in SIZES)
        lines.append(f"| {server} | {cells} |")
    lines.append("")
    for size in SIZES:
        best = max(SERVERS[1:], key=lambda s: median[s, size][0])
        ratio = median["kanal", size][0] / median[best, size][0]
        lines.append(f"- {size // 1024} KiB: Kanal's own server / best library server ({best}) = {ratio:.2f}")
    print("\n" + "\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
