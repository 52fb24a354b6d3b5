"""Where accepted events go: a Protocol, the Kafka implementation, and an in-memory fake for tests.

`send` returns only when every record is acknowledged (acks=all), or raises Unavailable when
Kafka cannot take them within the configured time: the ingress answers 202 only after `send`
returned, so a 202 always means the event is stored.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from channel.errors import Unavailable
from channel.events import KafkaRecord

__all__ = ["EventSink", "KafkaEventSink", "MemoryEventSink"]


class EventSink(Protocol):
    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None: ...


class KafkaEventSink:
    """Writes records with an aiokafka producer; concurrent requests share producer batches."""

    def __init__(self, producer: AIOKafkaProducer, timeout: float) -> None:
        self._producer = producer
        self._timeout = timeout
        self._spread = itertools.count()
        # Set when a write failed, cleared by the next that succeeds: readiness reports it.
        self.failing = False

    def healthy(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return not self.failing

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                if len(records) == 1:
                    await (await self._send_one(topic, records[0]))
                else:
                    futures = [await self._send_one(topic, r) for r in records]
                    for future in futures:
                        await future
        except TimeoutError:
            self.failing = True
            raise Unavailable(f"Kafka did not acknowledge within {self._timeout}s") from None
        except KafkaError as exc:
            self.failing = True
            raise Unavailable(f"Kafka refused the write: {exc}") from exc
        self.failing = False

    async def _send_one(self, topic: str, record: KafkaRecord) -> asyncio.Future[object]:
        if record.key is not None or record.value is not None:
            future: asyncio.Future[object] = await self._producer.send(
                topic, value=record.value, key=record.key, headers=record.headers
            )
            return future
        # An event without data and without partitionkey is a record with a null key and a null
        # value (KAF-03, KAF-06). aiokafka's send() refuses that combination, its batch API does
        # not: such records go out as a one-record batch to the partitions in turn.
        partitions = sorted(await self._producer.partitions_for(topic))
        batch = self._producer.create_batch()
        batch.append(key=None, value=None, timestamp=None, headers=record.headers)
        batch.close()
        partition = partitions[next(self._spread) % len(partitions)]
        batch_future: asyncio.Future[object] = await self._producer.send_batch(
            batch, topic, partition=partition
        )
        return batch_future


class MemoryEventSink:
    """An in-memory sink for unit tests: records per topic, or failing on demand."""

    def __init__(self) -> None:
        self.topics: dict[str, list[KafkaRecord]] = {}
        self.fail: Unavailable | None = None

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        if self.fail is not None:
            raise self.fail
        self.topics.setdefault(topic, []).extend(records)
