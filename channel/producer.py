"""Where accepted events go: a Protocol, the Kafka implementation, and an in-memory fake for tests.

`send` returns only when every record is acknowledged (acks=all), or raises Unavailable when
Kafka cannot take them within the configured time: the ingress answers 202 only after `send`
returned, so a 202 always means the event is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from channel.events import KafkaRecord

from channel.errors import Unavailable

__all__ = ["EventSink", "KafkaEventSink", "MemoryEventSink"]


class EventSink(Protocol):
    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None: ...


class KafkaEventSink:
    """Writes records with an aiokafka producer; concurrent requests share producer batches."""

    def __init__(self, producer: AIOKafkaProducer, timeout: float) -> None:
        self._producer = producer
        self._timeout = timeout

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                futures = [
                    await self._producer.send(topic, value=r.value, key=r.key, headers=r.headers)
                    for r in records
                ]
                for future in futures:
                    await future
        except TimeoutError:
            raise Unavailable(f"Kafka did not acknowledge within {self._timeout}s") from None
        except KafkaError as exc:
            raise Unavailable(f"Kafka refused the write: {exc}") from exc


class MemoryEventSink:
    """An in-memory sink for unit tests: records per topic, or failing on demand."""

    def __init__(self) -> None:
        self.topics: dict[str, list[KafkaRecord]] = {}
        self.fail: Unavailable | None = None

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        if self.fail is not None:
            raise self.fail
        self.topics.setdefault(topic, []).extend(records)
