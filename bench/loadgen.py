"""An open-loop load generator: POST binary-mode CloudEvents at a fixed rate, report latency.

Run as its own process so the load does not share the measured server's event loop. Latency is
measured from each request's scheduled start, so a stalled server is not hidden (no coordinated
omission). Bounded: `--rate` x `--seconds` requests at most, then it stops.

    python bench/loadgen.py URL --rate 5000 --seconds 10 --connections 64 --body-bytes 1024 [--stamp]

With `--stamp`, each event carries the extension `benchsent`: the wall-clock time just before
the request is written, which bench/sink.py subtracts from its receipt time (end-to-end latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


async def run(
    url: str, rate: float, seconds: float, connections: int, body_bytes: int, stamp: bool = False
) -> dict[str, float]:
    body = b'{"data":"' + b"x" * max(0, body_bytes - 12) + b'"}'
    total = int(rate * seconds)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limit = asyncio.Semaphore(connections)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()

        async def one(i: int, scheduled: float) -> None:
            async with limit:
                headers = {
                    "ce-id": f"lg-{i}",
                    "ce-specversion": "1.0",
                    "ce-type": "bench.event",
                    "ce-source": "loadgen",
                    "content-type": "application/json",
                }
                if stamp:
                    headers["ce-benchsent"] = repr(time.time())
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        if response.status != 202:
                            errors[str(response.status)] = errors.get(str(response.status), 0) + 1
                except aiohttp.ClientError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": total,
        "achieved_rate": total / elapsed,
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
    args = parser.parse_args()
    result = asyncio.run(
        run(args.url, args.rate, args.seconds, args.connections, args.body_bytes, args.stamp)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
