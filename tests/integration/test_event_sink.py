"""The ingress's Kafka sink against a real Kafka-protocol broker: what concurrent callers hand it is
written whole, in order per key, to the partitions Kafka's partitioner picks, and a write Kafka
cannot take is refused without being stored later."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import AIOKafkaConnection

from channel.errors import Unavailable
from channel.events import KafkaRecord
from channel.kafka import create_admin, create_producer, ensure_topic
from channel.producer import STICKY_BYTES, KafkaEventSink
from support.kafka import KafkaUnderTest, own_broker

pytestmark = pytest.mark.kafka

PARTITIONS = 4


async def _topic(kafka: KafkaUnderTest) -> str:
    topic = f"sink-{uuid.uuid4().hex[:8]}"
    admin = create_admin(kafka.settings())
    await admin.start()
    try:
        await ensure_topic(admin, topic, partitions=PARTITIONS, replication_factor=1)
    finally:
        await admin.close()
    return topic


Seen = list[tuple[int, bytes | None, bytes | None]]  # partition, key, value


async def _read_all(kafka: KafkaUnderTest, topic: str, expected: int) -> Seen:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        seen: Seen = []
        async with asyncio.timeout(30):
            while len(seen) < expected:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    seen.extend((tp.partition, r.key, r.value) for r in records)
        await asyncio.sleep(0.3)  # anything beyond `expected` would show up here
        for tp, records in (await consumer.getmany(timeout_ms=200)).items():
            seen.extend((tp.partition, r.key, r.value) for r in records)
        return seen
    finally:
        await consumer.stop()


async def test_concurrent_sends_are_all_written_in_order_per_key(kafka: KafkaUnderTest) -> None:
    topic = await _topic(kafka)
    producer = create_producer(kafka.settings())
    await producer.start()
    sink = KafkaEventSink(producer, timeout=10)
    try:
        # 50 callers at once, each with 20 records: keyed ones (5 keys) and keyless ones.
        async def caller(n: int) -> None:
            records = [
                KafkaRecord(
                    f"key-{i % 5}".encode() if i % 2 else None,
                    f"{n}:{i}".encode(),
                    [("ce_id", f"{n}-{i}".encode())],
                )
                for i in range(20)
            ]
            await sink.send(topic, records)

        await asyncio.gather(*(caller(n) for n in range(50)))
        # An event without data and without a key: a record with a null key and a null value.
        await sink.send(topic, [KafkaRecord(None, None, [("ce_id", b"empty")])])
    finally:
        await producer.stop()

    seen = await _read_all(kafka, topic, 50 * 20 + 1)
    assert len(seen) == 50 * 20 + 1
    assert sum(1 for _, key, value in seen if key is None and value is None) == 1
    values = [value for _, _, value in seen if value is not None]
    assert len(set(values)) == 50 * 20  # each written exactly once
    # Keyed records land where aiokafka's (and Kafka's) default partitioner puts them ...
    reference = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await reference.start()
    try:
        expected_partition = {
            f"key-{k}".encode(): (
                await (await reference.send(topic, b"probe", key=f"key-{k}".encode()))
            ).partition
            for k in range(5)
        }
    finally:
        await reference.stop()
    for partition, key, _ in seen:
        if key is not None:
            assert partition == expected_partition[key]
    # ... and each caller's records of one key are in the order it sent them.
    for n in range(50):
        for k in range(5):
            mine = [
                v
                for _, key, v in seen
                if key == f"key-{k}".encode() and v is not None and v.startswith(f"{n}:".encode())
            ]
            assert mine == sorted(mine, key=lambda v: int(v.split(b":")[1]))


async def test_keyless_records_fill_one_partition_before_the_next(kafka: KafkaUnderTest) -> None:
    """Sent one at a time, each its own flush and batch: 1 KiB keyless records go to one
    partition until STICKY_BYTES of values went there, then to the next in turn, so a consumer
    finds a slow stream's new records in one partition rather than spread over all of them."""
    topic = await _topic(kafka)
    producer = create_producer(kafka.settings())
    await producer.start()
    sink = KafkaEventSink(producer, timeout=10)
    run = STICKY_BYTES // 1024
    count = 2 * run + run // 2
    try:
        for i in range(count):
            await sink.send(topic, [KafkaRecord(None, b"%04d" % i + b"x" * 1020, [])])
    finally:
        await producer.stop()
    seen = await _read_all(kafka, topic, count)
    assert len(seen) == count
    partition_of = {int(value[:4]): partition for partition, _, value in seen if value is not None}
    in_order = [partition_of[i] for i in range(count)]
    assert [len(list(group)) for _, group in itertools.groupby(in_order)] == [run, run, run // 2]
    assert len({in_order[0], in_order[run], in_order[2 * run]}) == 3


async def test_a_write_not_handed_over_in_time_is_refused_and_never_stored(
    kafka_backend: str, tmp_path: Path
) -> None:
    """Its own broker, frozen with SIGSTOP while callers wait. The first caller's batch is in a
    request (it may still be stored: its Unavailable is ambiguous). The others wait for the
    producer to be done with it, which outlasts their deadline even after the first caller's
    ran out, so they are never handed over: they get Unavailable and, after the broker resumes,
    are not in the topic."""
    with own_broker(kafka_backend, tmp_path) as (broker, kafka):
        topic = await _topic(kafka)
        # The producer's request outlasts the callers' wait, so the first request stays in flight
        # while the broker is frozen and the third batch cannot get into the producer in time.
        producer = create_producer(kafka.settings(kafka_produce_timeout=10.0))
        await producer.start()
        sink = KafkaEventSink(producer, timeout=1.5)
        try:
            await sink.send(topic, [KafkaRecord(b"k", b"before", [])])
            assert not sink.failing
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                sends = []
                for name in (b"in-request", b"waiting", b"never"):
                    sends.append(asyncio.create_task(sink.send(topic, [KafkaRecord(b"k", name, [])])))
                    await asyncio.sleep(0.2)  # each its own flush, one key: one partition
                results = await asyncio.gather(*sends, return_exceptions=True)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            assert all(isinstance(r, Unavailable) for r in results), results
            assert sink.failing
            async with asyncio.timeout(30):
                while True:
                    try:
                        await sink.send(topic, [KafkaRecord(b"k", b"after", [])])
                        break
                    except Unavailable:
                        await asyncio.sleep(0.5)  # the producer reconnects to the resumed broker
            assert not sink.failing
        finally:
            await producer.stop()
        values = [value for _, _, value in await _read_all(kafka, topic, 2)]
        assert values[0] == b"before" and b"after" in values
        assert b"waiting" not in values and b"never" not in values, values


class _Writes:
    """What the sink hands the producer (each batch's record count) and what the producer writes
    to the broker (each produce request, seen on aiokafka's connection, which does the writing),
    with the answers given in between."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, producer: AIOKafkaProducer) -> None:
        self.log: list[str] = []
        send = AIOKafkaConnection.send
        send_batch = producer.send_batch

        def observed_send(conn: AIOKafkaConnection, request: Any, *args: Any, **kwargs: Any) -> Any:
            if type(request).__name__ == "ProduceRequest":
                self.log.append("request")
            return send(conn, request, *args, **kwargs)

        async def observed_batch(batch: Any, topic: str, *, partition: int) -> Any:
            self.log.append(f"batch of {batch.record_count()}")
            return await send_batch(batch, topic, partition=partition)

        monkeypatch.setattr(AIOKafkaConnection, "send", observed_send)
        monkeypatch.setattr(producer, "send_batch", observed_batch)

    def answered(self, name: str) -> Callable[[Unavailable | None], None]:
        def done(error: Unavailable | None) -> None:
            self.log.append(f"answered {name}" if error is None else f"failed {name}")

        return done


@contextlib.asynccontextmanager
async def _freezable(
    monkeypatch: pytest.MonkeyPatch, kafka_backend: str, workdir: Path
) -> AsyncIterator[tuple[_Writes, KafkaEventSink, str, int]]:
    """A sink on a broker of its own (so freezing it stops no other test), its topic's metadata
    already known, its writes observed; with the broker's pid, to SIGSTOP."""
    with own_broker(kafka_backend, workdir) as (broker, kafka):
        topic = await _topic(kafka)
        producer = create_producer(kafka.settings())
        await producer.start()
        writes = _Writes(monkeypatch, producer)
        sink = KafkaEventSink(producer, timeout=20)
        try:
            await sink.send(topic, [KafkaRecord(None, b"warm-up", [])])
            writes.log.clear()
            assert broker.pid is not None
            yield writes, sink, topic, broker.pid
        finally:
            await producer.stop()


async def test_sends_while_a_write_is_with_kafka_go_as_one_request(
    monkeypatch: pytest.MonkeyPatch, kafka_backend: str, tmp_path: Path
) -> None:
    """One flush per topic with the producer: the broker is frozen while one record is in a
    request, and 20 callers send one record each, a few loop turns apart. When the broker
    answers, their 20 records go in one batch and one produce request, not in one batch queued
    in the producer for the first of them and another for the rest."""
    async with _freezable(monkeypatch, kafka_backend, tmp_path) as (writes, sink, topic, pid):
        os.kill(pid, signal.SIGSTOP)
        try:
            sends = [asyncio.create_task(sink.send(topic, [KafkaRecord(None, b"first", [])]))]
            while writes.log != ["batch of 1", "request"]:
                await asyncio.sleep(0)
            for i in range(20):
                sends.append(asyncio.create_task(sink.send(topic, [KafkaRecord(None, b"%d" % i, [])])))
                for _ in range(3):
                    await asyncio.sleep(0)  # time for a writer to hand them over one by one
        finally:
            os.kill(pid, signal.SIGCONT)
        async with asyncio.timeout(20):
            await asyncio.gather(*sends)
    assert writes.log == ["batch of 1", "request", "batch of 20", "request"]


async def test_the_next_write_is_on_the_wire_before_the_last_ones_callers_are_answered(
    monkeypatch: pytest.MonkeyPatch, kafka_backend: str, tmp_path: Path
) -> None:
    """When Kafka acknowledges a flush and another waits, the other is written first and the
    acknowledged flush's callers are answered after (SENDER_TURNS loop turns later), so Kafka
    works on it while the answers go out. If aiokafka ever needs more turns to put a handed-over
    batch in a request, this fails, and SENDER_TURNS wants raising."""
    async with _freezable(monkeypatch, kafka_backend, tmp_path) as (writes, sink, topic, pid):
        for _ in range(3):
            writes.log.clear()
            os.kill(pid, signal.SIGSTOP)
            try:
                sink.submit(topic, [KafkaRecord(None, b"a", [])], writes.answered("a"))
                while writes.log != ["batch of 1", "request"]:
                    await asyncio.sleep(0)
                for name in ("b", "c"):
                    sink.submit(topic, [KafkaRecord(None, name.encode(), [])], writes.answered(name))
            finally:
                os.kill(pid, signal.SIGCONT)
            async with asyncio.timeout(20):
                while "answered c" not in writes.log:
                    await asyncio.sleep(0.01)
            assert writes.log == [
                *("batch of 1", "request"),
                *("batch of 2", "request"),
                *("answered a", "answered b", "answered c"),
            ]
