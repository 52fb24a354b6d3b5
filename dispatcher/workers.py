"""The workers that deliver a lane's events, concurrently or in order, and their bounded drain.

An unordered lane shares one queue between up to `Lane.limit` workers; an ordered lane has one
queue and one worker per partition and key (`lane.sequence`), which delivers one event (with
its retries) at a time, in offset order, so an event being retried holds back only its key.
Workers are tasks of the topic consumer's task group, started when an event is queued and none
is free, and ending when their queue is empty. Whatever a delivery's outcome, its offset is
marked done in the partition it was begun in, unless the partition was revoked meanwhile (its
next owner delivers the event) or a stop interrupted it (not done, so not committed). Events of
other keys finishing first never move the commit past it: the lowest offset in flight is
committed (`offsets.PartitionOffsets`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import TopicPartition

from channel.events import CloudEvent
from dispatcher import metrics
from dispatcher.dispatch import Dispatcher, Interrupted, Source
from dispatcher.lane import Item, Lane, Sequence, sequence
from dispatcher.offsets import PartitionOffsets

__all__ = ["DRAIN_TIMEOUT", "Workers"]

log = logging.getLogger(__name__)

# How long stopping waits for deliveries in flight; the rest are delivered again by the next owner.
DRAIN_TIMEOUT = 10.0


class Workers:
    """Delivers the events queued in the lanes of one topic."""

    def __init__(
        self,
        topic: str,
        dispatcher: Dispatcher,
        stopping: asyncio.Event,
        tasks: Callable[[], asyncio.TaskGroup | None],
    ) -> None:
        self._topic = topic
        self._dispatcher = dispatcher
        self._stopping = stopping
        self._tasks = tasks  # the running consumer's task group

    def begin(self, lane: Lane, tp: TopicPartition, event: CloudEvent, source: Source) -> None:
        """Queue `event` for `lane`, in flight from now on, and start a worker if it needs one."""
        parts = lane.offsets.get(tp)
        if parts is None:
            parts = lane.offsets[tp] = PartitionOffsets()
        parts.begin(source.offset)
        lane.pending += 1
        if lane.full():
            lane.room.clear()
        item = (parts, event, source)
        if lane.plan.ordered:
            # One worker per partition and key takes its queue first in, first out: one delivery
            # (with its retries) at a time, in offset order.
            serial = sequence(tp, source.key)
            queue = lane.serial.get(serial)
            if queue is None:
                queue = lane.serial[serial] = deque()
                queue.append(item)
                self._spawn(lane, self._work(lane, queue, serial))
            else:
                queue.append(item)
        else:
            lane.queue.append(item)
            if lane.workers < lane.limit:
                lane.workers += 1
                self._spawn(lane, self._work(lane, lane.queue, None))

    def _spawn(self, lane: Lane, work: Coroutine[Any, Any, None]) -> None:
        tasks = self._tasks()
        assert tasks is not None
        task = tasks.create_task(work)
        lane.tasks.add(task)
        task.add_done_callback(lane.tasks.discard)

    async def _work(self, lane: Lane, queue: deque[Item], serial: Sequence | None) -> None:
        """Deliver from `queue` until it is empty; stop early when stopping or retired."""
        try:
            while queue and not self._stopping.is_set() and not lane.retired:
                await self._deliver(lane, *queue.popleft())
        finally:
            if serial is None:
                lane.workers -= 1
            elif lane.serial.get(serial) is queue:
                del lane.serial[serial]

    async def _deliver(self, lane: Lane, parts: PartitionOffsets, event: CloudEvent, source: Source) -> None:
        try:
            if lane.offsets.get(TopicPartition(self._topic, source.partition)) is parts:
                await self._dispatcher.deliver(lane.plan, event, source, stop=self._stopping, gate=lane.gate)
            # else: the partition was revoked since; its next owner delivers the event.
        except Interrupted:
            # Stopping while it waited to try again (or for its subscriber's gate): not done, so
            # not committed; the next owner delivers it, continuing its attempt count.
            log.debug("stopped before the next attempt of event id=%s for %s", event.id, lane.key)
            return
        except Exception:
            # Never let one event stop the partition; it is counted and logged as dropped.
            log.exception("delivery of event id=%s for %s failed unexpectedly", event.id, lane.key)
            metrics.EVENTS.labels(*lane.plan.series, "dropped").inc()
        finally:
            lane.pending -= 1
            if not lane.full():
                lane.room.set()
        parts.done(source.offset)

    async def drain(self, lanes: list[Lane]) -> None:
        """Let deliveries in flight finish, bounded; what does not finish is delivered again later."""
        tasks = [task for lane in lanes for task in lane.tasks]
        if not tasks:
            return
        _, unfinished = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT)
        if unfinished:
            log.warning(
                "%s: %d deliveries did not finish within %ss; they will be delivered again",
                self._topic,
                len(unfinished),
                DRAIN_TIMEOUT,
            )
            for task in unfinished:
                task.cancel()
