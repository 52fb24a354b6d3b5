"""Where each partition of a topic ends, read the way the controller records a new Trigger's start
point, against real Kafka-protocol brokers: exact after multi-record batches (the embedded
broker's ListOffsets is not), and a missing topic is neither reported nor created."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from channel.control.ends import log_ends
from channel.kafka import create_admin, create_producer, ensure_topic
from support.kafka import KafkaUnderTest

pytestmark = pytest.mark.kafka


async def test_the_end_of_each_partition_is_one_past_its_last_record(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    topic, missing = f"ends.{uuid.uuid4().hex[:8]}", f"ends.missing.{uuid.uuid4().hex[:8]}"
    admin = create_admin(settings)
    producer = create_producer(settings, linger_ms=20)
    await admin.start()
    await producer.start()
    try:
        await ensure_topic(admin, topic, partitions=3, replication_factor=1)
        assert await log_ends(settings, admin, [topic, missing], timeout=10) == {topic: {0: 0, 1: 0, 2: 0}}
        # Partition 0 gets batches of many records, 1 a single record, 2 nothing.
        for _ in range(2):
            sends = [await producer.send(topic, b"x", partition=0) for _ in range(25)]
            await asyncio.gather(*sends)
        await (await producer.send(topic, b"y", partition=1))

        assert await log_ends(settings, admin, [topic, missing], timeout=10) == {topic: {0: 50, 1: 1, 2: 0}}
        assert missing not in await admin.list_topics()
    finally:
        await producer.stop()
        await admin.close()
