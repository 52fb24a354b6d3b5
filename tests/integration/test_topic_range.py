"""TopicRange (replay, dead letters) on each broker: it finds a topic's partitions without a
consumer group, and a topic that does not exist is NotFound and is not created by asking."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from channel.errors import NotFound
from channel.kafka import create_admin, ensure_topic
from channel.topics import TopicRange
from support.kafka import KafkaUnderTest

pytestmark = pytest.mark.kafka


async def test_every_partition_is_read_to_the_end(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    topic = f"range-{uuid.uuid4().hex[:8]}"
    admin = create_admin(settings)
    await admin.start()
    try:
        await ensure_topic(admin, topic, partitions=3, replication_factor=1)
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for partition in range(3):
            for i in range(4):
                await producer.send_and_wait(topic, b"%d-%d" % (partition, i), partition=partition)
    finally:
        await producer.stop()
    reader = TopicRange(settings, topic)
    values = sorted([record.value async for record in reader.records()])
    assert values == sorted(b"%d-%d" % (p, i) for p in range(3) for i in range(4))
    assert reader.total == 12


async def test_a_missing_topic_is_not_found_and_not_created(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    topic = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFound):
        [record async for record in TopicRange(settings, topic).records()]
    admin = create_admin(settings)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()
