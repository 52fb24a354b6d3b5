"""Delivery attempts that survive crashes and rebalances.

When a partition moves to another dispatcher (a rebalance, a crash) while one of its events is
being retried, the new owner must continue the count, not start again from attempt 1: otherwise
an event can be retried forever and never reach its dead-letter sink (Knative #3746). The count
of failed attempts of each event being retried is kept in a compacted Kafka topic, keyed by
consumer group, partition and offset, written after each failed attempt and tombstoned when the
event reaches its final outcome. Events delivered at the first attempt never touch it.

Every dispatcher follows the topic (it stays small: only events being retried right now), and
waits until it has read it up to date before delivering from a partition it was just given.
The bound this gives: attempts across any number of moves <= retry + 1, plus the one attempt
that was in flight when an owner died.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from channel.control.log import ResourceLog, ResourceWriter
from channel.errors import Unavailable
from channel.settings import Settings

__all__ = ["AttemptStore", "Attempts", "MemoryAttempts"]

log = logging.getLogger(__name__)


def _key(group: str, partition: int, offset: int) -> str:
    return f"{group}/{partition}/{offset}"


class Attempts(Protocol):
    def get(self, group: str, partition: int, offset: int) -> int: ...
    async def record(self, group: str, partition: int, offset: int, attempts: int) -> None: ...
    async def clear(self, group: str, partition: int, offset: int) -> None: ...
    async def caught_up(self) -> None: ...


class MemoryAttempts:
    """For unit tests and single-process use."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def get(self, group: str, partition: int, offset: int) -> int:
        return self.counts.get(_key(group, partition, offset), 0)

    async def record(self, group: str, partition: int, offset: int, attempts: int) -> None:
        self.counts[_key(group, partition, offset)] = attempts

    async def clear(self, group: str, partition: int, offset: int) -> None:
        self.counts.pop(_key(group, partition, offset), None)

    async def caught_up(self) -> None:
        return None


class AttemptStore:
    """The Kafka-backed store: a follower of the attempts topic plus a writer to it."""

    def __init__(self, settings: Settings) -> None:
        self.log = ResourceLog(settings, topic=settings.kafka_attempts_topic)
        self._writer = ResourceWriter(settings, topic=settings.kafka_attempts_topic)
        self._recorded: set[str] = set()

    async def start(self) -> None:
        await self.log.start()
        await self._writer.start()

    async def close(self) -> None:
        await self._writer.close()
        await self.log.close()

    def get(self, group: str, partition: int, offset: int) -> int:
        doc: Mapping[str, Any] | None = self.log.documents.get(_key(group, partition, offset))
        return int(doc.get("attempts", 0)) if doc else 0

    async def record(self, group: str, partition: int, offset: int, attempts: int) -> None:
        key = _key(group, partition, offset)
        try:
            await self._writer.write([(key, {"attempts": attempts})])
            self._recorded.add(key)
        except Unavailable as exc:
            # Not fatal: the delivery goes on; only a crash right now would restart the count.
            log.warning("cannot record attempt %d of %s: %s", attempts, key, exc)

    async def clear(self, group: str, partition: int, offset: int) -> None:
        key = _key(group, partition, offset)
        if key not in self._recorded and key not in self.log.documents:
            return
        try:
            await self._writer.write([(key, None)])
            self._recorded.discard(key)
        except Unavailable as exc:
            log.warning("cannot clear attempts of %s: %s", key, exc)

    async def caught_up(self) -> None:
        await self.log.caught_up(timeout=5.0)
