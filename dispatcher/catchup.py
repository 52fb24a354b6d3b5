"""A lane's own reader: it feeds a Trigger the partitions it is behind on, until it catches up.

A lane is detached from the shared reader on a partition when it is too slow to keep up (its
buffer stayed full) or when its Trigger was added while the dispatcher runs and begins behind the
shared reader. Its reader has no consumer group and is assigned the partitions by hand, from the
first record the lane did not take; it applies the lane's filter itself (the shared reader's
index does not see these records) and waits for room in the lane. Once the lane's next record is
one the shared reader has not handed out yet (`lane.may_rejoin`), the partition is attached
again and the reader ends when no partition is left to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from channel.errors import InvalidEvent
from channel.events import from_kafka_record
from channel.kafka import client_options
from channel.settings import Settings
from dispatcher import metrics
from dispatcher.dispatch import source_of
from dispatcher.lane import Lane, may_rejoin
from dispatcher.workers import Workers

__all__ = ["CatchUp", "SharedReader"]

log = logging.getLogger(__name__)


class SharedReader(Protocol):
    """What a lane's reader needs to know of the shared reader of its topic."""

    def position(self, tp: TopicPartition) -> int:
        """The next offset the shared reader hands out on `tp` (0 before it read any)."""
        ...

    def owns(self, tp: TopicPartition) -> bool:
        """Whether `tp` is assigned to this process."""
        ...


class CatchUp:
    """Starts and runs the readers of the lanes of one topic that read on their own."""

    def __init__(
        self,
        topic: str,
        settings: Settings,
        shared: SharedReader,
        workers: Workers,
        stopping: asyncio.Event,
        tasks: Callable[[], asyncio.TaskGroup | None],
    ) -> None:
        self._topic = topic
        self._settings = settings
        self._shared = shared
        self._workers = workers
        self._stopping = stopping
        self._tasks = tasks

    def ensure_reader(self, lane: Lane) -> None:
        """Start `lane`'s reader unless it has one (or nothing runs, or the lane is retired)."""
        tasks = self._tasks()
        if lane.reader is None and tasks is not None and not lane.retired:
            lane.reader = tasks.create_task(self._catch_up(lane))

    async def _catch_up(self, lane: Lane) -> None:
        """Feed `lane` the partitions it is behind on, until it has caught up with the shared reader."""
        reader = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._settings.event_fetch_max_wait_ms(),
        )
        try:
            await reader.start()
            placed: dict[TopicPartition, int] = {}
            while lane.catching and not lane.retired and not self._stopping.is_set():
                if lane.moved or set(placed) != set(lane.catching):
                    lane.moved = False
                    placed = dict(lane.catching)
                    reader.assign(list(placed))
                    for tp, offset in placed.items():
                        reader.seek(tp, offset)
                try:
                    batches = await reader.getmany(timeout_ms=200, max_records=500)
                except KafkaError as exc:
                    log.warning("catch-up read of %s for %s failed: %s", self._topic, lane.key, exc)
                    await asyncio.sleep(0.5)
                    placed = {}
                    continue
                for tp, records in batches.items():
                    await self._records(lane, tp, records)
                for tp in list(lane.catching):
                    self.rejoin(lane, tp, lane.catching[tp])
        finally:
            lane.reader = None
            try:
                await reader.stop()
            except KafkaError as exc:
                log.warning("closing a catch-up reader of %s: %s", self._topic, exc)
        # Detached again while this reader was closing: read on.
        if lane.catching and not lane.retired and not self._stopping.is_set():
            self.ensure_reader(lane)

    async def _records(self, lane: Lane, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        plan_filter = lane.plan.filter
        for record in records:
            nxt = lane.catching.get(tp)
            if nxt is None or lane.retired or self._stopping.is_set():
                return
            offset = record.offset
            if offset < nxt:
                continue
            if self.rejoin(lane, tp, offset):
                return
            lane.catching[tp] = offset + 1
            try:
                event = from_kafka_record(record.key, record.value, record.headers)
            except InvalidEvent:
                continue  # counted by the shared reader
            if lane.floor.refuses(tp, record.timestamp):
                continue
            if not plan_filter.matches(event.attributes):
                metrics.EVENTS.labels(*lane.plan.series, "filtered").inc()
                continue
            while lane.full():
                await lane.room.wait()
            if tp not in lane.catching:  # revoked while waiting
                return
            self._workers.begin(lane, tp, event, source_of(record))

    def rejoin(self, lane: Lane, tp: TopicPartition, offset: int) -> bool:
        """Attach `tp` back to the shared reader if the lane's next record is one it has not handed out."""
        shared = self._shared
        if not may_rejoin(offset, shared.position(tp), lane.pending, lane.buffer, shared.owns(tp)):
            return False
        del lane.catching[tp]
        lane.start[tp] = offset
        log.info("trigger %s caught up on %s[%d] at offset %d", lane.key, tp.topic, tp.partition, offset)
        return True
