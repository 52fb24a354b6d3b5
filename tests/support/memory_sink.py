"""An in-memory EventSink for tests that need an ingress without Kafka: records kept per topic,
or every write failing with the error set in `fail`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from channel.errors import KanalError
from channel.events import KafkaRecord
from channel.producer import Done

__all__ = ["MemoryEventSink"]


class MemoryEventSink:
    """Keeps what it is given (unless `fail` is set) and answers on the next loop turn, as a
    Kafka acknowledgement would come later."""

    def __init__(self) -> None:
        self.topics: dict[str, list[KafkaRecord]] = {}
        self.fail: KanalError | None = None

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        self.topics.setdefault(topic, []).extend(records)

    def submit(self, topic: str, records: Sequence[KafkaRecord], done: Done) -> None:
        if self.fail is None:
            self.topics.setdefault(topic, []).extend(records)
        asyncio.get_running_loop().call_soon(done, self.fail)
