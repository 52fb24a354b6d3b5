"""The dispatcher's baseline: a bare aiohttp client POSTing N events to a sink, 64 at a time.

What a dispatcher does at the least (one HTTP POST per event in binary mode, a bounded number in
flight), without Kafka, filters or offsets. Closed loop: each of `--concurrency` workers sends
its next request when the previous one was answered. Prints one JSON object.

    python bench/postloop.py URL --count 50000 --concurrency 64 [--body-bytes 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def run(url: str, count: int, concurrency: int, body_bytes: int) -> dict[str, float]:
    body = b'{"data":"' + b"x" * max(0, body_bytes - 12) + b'"}'
    next_index = 0
    errors = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_index, errors
        while next_index < count:
            index, next_index = next_index, next_index + 1
            headers = {
                "ce-id": f"post-{index}",
                "ce-specversion": "1.0",
                "ce-type": "bench.event",
                "ce-source": "bench",
                "content-type": "application/json",
                "prefer": "reply",
            }
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker(session))
        elapsed = time.perf_counter() - start
    return {"records": count, "seconds": elapsed, "rate": count / elapsed, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    async def bounded() -> dict[str, float]:
        async with asyncio.timeout(args.timeout):
            return await run(args.url, args.count, args.concurrency, args.body_bytes)

    print(json.dumps(asyncio.run(bounded())))


if __name__ == "__main__":
    main()
