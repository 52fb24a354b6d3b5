"""Bare aiokafka baselines, in a process of their own: produce and consume N records.

`produce` writes N binary-mode CloudEvent records (the ingress's format: `ce_` headers,
`content-type`, the JSON data as the value, through channel.events.to_kafka_record) with
acks=all, every send pipelined; it is both the producer baseline and the way the dispatcher
benchmarks pre-load a Broker's topic. `--types N` cycles `type` through bench.type.0 .. N-1.
`consume` reads N records from the beginning with a fresh consumer group, timed from its
assignment. `latency` is the end-to-end baseline: it creates TOPIC, produces at a fixed `--rate`
for `--seconds` (open loop, the send time in a header) while a consumer of every partition
(aiokafka's defaults unless `--fetch-max-wait-ms`) records receipt minus send time. The
producers are idempotent with `--idempotence`, as Kanal's are on Apache Kafka (the embedded
broker lacks InitProducerId). Each prints one JSON object. Bounded by `--timeout`.

    python bench/kafka_bare.py produce BOOTSTRAP TOPIC --count 50000 [--body-bytes 1024] [--types N]
    python bench/kafka_bare.py consume BOOTSTRAP TOPIC --count 50000
    python bench/kafka_bare.py latency BOOTSTRAP TOPIC --rate 1000 --seconds 10 [--idempotence]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channel.events import CloudEvent, to_kafka_record
from channel.kafka import ensure_topic

SENT_HEADER = "bench_sent"


def event_type(index: int, types: int) -> str:
    return "bench.event" if types == 0 else f"bench.type.{index % types}"


async def produce(
    bootstrap: str, topic: str, count: int, body_bytes: int, types: int, idempotence: bool
) -> dict[str, float]:
    body = b'{"data":"' + b"x" * max(0, body_bytes - 12) + b'"}'
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=idempotence,
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


class _Assigned(ConsumerRebalanceListener):
    """Notes when the group gave the consumer its partitions: the read is timed from there."""

    def __init__(self) -> None:
        self.at: float | None = None

    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.at = time.perf_counter()


async def consume(bootstrap: str, topic: str, count: int) -> dict[str, float]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench.bare.{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    assigned = _Assigned()
    consumer.subscribe([topic], listener=assigned)
    await consumer.start()
    received = 0
    try:
        while received < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            received += sum(len(records) for records in batches.values())
        # From the assignment, group join excluded, not from the first record: Apache Kafka's
        # fetches may hold every pre-loaded record before the first getmany returns.
        elapsed = time.perf_counter() - (assigned.at or time.perf_counter())
    finally:
        await consumer.stop()
    return {"records": received, "seconds": elapsed, "rate": received / elapsed if elapsed else 0.0}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {key: float("nan") for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms")}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99), "max_ms": ordered[-1] * 1000}


async def latency(
    bootstrap: str,
    topic: str,
    rate: float,
    seconds: float,
    body_bytes: int,
    partitions: int,
    fetch_max_wait_ms: int,
    idempotence: bool,
) -> dict[str, float]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await ensure_topic(admin, topic, partitions=partitions, replication_factor=1)
    finally:
        await admin.close()
    body = b'{"data":"' + b"x" * max(0, body_bytes - 12) + b'"}'
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotence, linger_ms=0
    )
    # aiokafka's default fetch_max_wait_ms is 500; a broker may hold a fetch that long for data.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=fetch_max_wait_ms
    )
    await producer.start()
    await consumer.start()
    total = int(rate * seconds)
    received: list[float] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))])
        await consumer.seek_to_end()

        async def consume() -> None:
            while len(received) < total:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    now = time.time()
                    for record in records:
                        sent = dict(record.headers).get(SENT_HEADER)
                        if sent is not None:
                            received.append(now - float(sent))

        async def produce() -> None:
            start = time.perf_counter()
            futures = []
            for i in range(total):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                futures.append(
                    await producer.send(
                        topic, value=body, headers=[(SENT_HEADER, repr(time.time()).encode())]
                    )
                )
            await asyncio.gather(*futures)

        async with asyncio.TaskGroup() as group:
            group.create_task(consume())
            group.create_task(produce())
    finally:
        await producer.stop()
        await consumer.stop()
    return {"records": total, "received": len(received), **percentiles(received)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["produce", "consume", "latency"])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--body-bytes", type=int, default=1024)
    parser.add_argument("--types", type=int, default=0, help="0: every event is bench.event")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument(
        "--fetch-max-wait-ms", type=int, default=500, help="the consumer's (aiokafka default)"
    )
    parser.add_argument(
        "--idempotence", action="store_true", help="idempotent producers (Kanal's default; not on Tansu)"
    )
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    async def bounded() -> dict[str, float]:
        async with asyncio.timeout(args.timeout):
            if args.mode == "latency":
                return await latency(
                    args.bootstrap,
                    args.topic,
                    args.rate,
                    args.seconds,
                    args.body_bytes,
                    args.partitions,
                    args.fetch_max_wait_ms,
                    args.idempotence,
                )
            if args.mode == "produce":
                return await produce(
                    args.bootstrap, args.topic, args.count, args.body_bytes, args.types, args.idempotence
                )
            return await consume(args.bootstrap, args.topic, args.count)

    print(json.dumps(asyncio.run(bounded())))


if __name__ == "__main__":
    main()
