"""Bare aiokafka baselines, in a process of their own: produce and consume N records.

`produce` writes N binary-mode CloudEvent records (the ingress's format: `ce_` headers,
`content-type`, the JSON data as the value, through channel.events.to_kafka_record) with
acks=all, every send pipelined; it is both the producer baseline and the way the dispatcher
benchmarks pre-load a Broker's topic. `--types N` cycles `type` through bench.type.0 .. N-1.
`consume` reads N records from the beginning with a fresh consumer group. Each prints one JSON
object: records, seconds, records/s. Bounded by `--timeout`.

    python bench/kafka_bare.py produce BOOTSTRAP TOPIC --count 50000 [--body-bytes 1024] [--types 1]
    python bench/kafka_bare.py consume BOOTSTRAP TOPIC --count 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channel.events import CloudEvent, to_kafka_record


def event_type(index: int, types: int) -> str:
    return "bench.event" if types == 0 else f"bench.type.{index % types}"


async def produce(bootstrap: str, topic: str, count: int, body_bytes: int, types: int) -> dict[str, float]:
    body = b'{"data":"' + b"x" * max(0, body_bytes - 12) + b'"}'
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,  # the embedded broker lacks InitProducerId, as for Kanal
        linger_ms=0,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata first, so it is not timed
        start = time.perf_counter()
        futures = []
        for i in range(count):
            record = to_kafka_record(
                CloudEvent(
                    {
                        "specversion": "1.0",
                        "id": f"pre-{i}",
                        "source": "bench",
                        "type": event_type(i, types),
                        "datacontenttype": "application/json",
                    },
                    body,
                )
            )
            futures.append(
                await producer.send(topic, value=record.value, key=record.key, headers=record.headers)
            )
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    return {"records": count, "seconds": elapsed, "rate": count / elapsed}


async def consume(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench.bare.{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    received = 0
    start: float | None = None
    try:
        while received < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if start is None:
                    start = time.perf_counter()  # from the first fetched record: group join excluded
                received += len(records)
        elapsed = time.perf_counter() - (start or time.perf_counter())
    finally:
        await consumer.stop()
    return {"records": received, "seconds": elapsed, "rate": received / elapsed if elapsed else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["produce", "consume"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--types", type=int, default=0, help="0: every event is bench.event")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    async def bounded() -> dict[str, float]:
        async with asyncio.timeout(args.timeout):
            if args.mode == "produce":
                return await produce(args.bootstrap, args.topic, args.count, args.body_bytes, args.types)
            return await consume(args.bootstrap, args.topic, args.count)

    print(json.dumps(asyncio.run(bounded())))


if __name__ == "__main__":
    main()
