"""The resource log against a real Kafka-protocol broker: atomic batches, replay, tombstones, follow."""

from __future__ import annotations

import asyncio

import pytest

from channel.control.log import ResourceLog, ResourceWriter
from support.kafka import KafkaUnderTest

pytestmark = pytest.mark.kafka


async def test_writes_are_replayed_by_a_new_follower(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    writer = ResourceWriter(settings)
    await writer.start()
    try:
        await writer.write([("Broker/ns/a", {"v": 1}), ("Broker/ns/b", {"v": 2}), ("Trigger/ns/t", {"v": 3})])
        await writer.write([("Broker/ns/a", {"v": 4}), ("Broker/ns/b", None)])
        follower = ResourceLog(settings)
        await follower.start()
        task = asyncio.create_task(follower.run())
        try:
            await asyncio.wait_for(follower.loaded.wait(), 15)
            assert follower.documents == {"Broker/ns/a": {"v": 4}, "Trigger/ns/t": {"v": 3}}
            assert follower.healthy()
        finally:
            task.cancel()
            await follower.close()
    finally:
        await writer.close()


async def test_follower_sees_changes_and_calls_listener(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    seen: list[frozenset[str]] = []
    follower = ResourceLog(settings, lambda docs, changed: seen.append(changed))
    await follower.start()
    task = asyncio.create_task(follower.run())
    writer = ResourceWriter(settings)
    await writer.start()
    try:
        await asyncio.wait_for(follower.loaded.wait(), 15)
        assert follower.documents == {}
        offset = await writer.write([("Broker/ns/x", {"v": 1})])
        await follower.wait_for_offset(offset, timeout=5)
        assert follower.documents == {"Broker/ns/x": {"v": 1}}
        assert frozenset({"Broker/ns/x"}) in seen
        offset = await writer.write([("Broker/ns/x", None)])
        await follower.wait_for_offset(offset, timeout=5)
        assert follower.documents == {}
    finally:
        task.cancel()
        await writer.close()
        await follower.close()


async def test_a_batch_is_never_half_visible(kafka: KafkaUnderTest) -> None:
    settings = kafka.settings()
    writer = ResourceWriter(settings)
    await writer.start()
    follower = ResourceLog(settings)
    await follower.start()
    snapshots: list[int] = []
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(follower.loaded.wait(), 15)

        async def watch() -> None:
            while True:
                snapshots.append(len(follower.documents))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        offset = await writer.write([(f"Trigger/ns/t{i}", {"i": i}) for i in range(200)])
        await follower.wait_for_offset(offset, timeout=5)
        watcher.cancel()
        assert set(snapshots) <= {0, 200}
        assert len(follower.documents) == 200
    finally:
        task.cancel()
        await writer.close()
        await follower.close()
