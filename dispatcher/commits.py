"""Committing each lane's progress to its Trigger's own consumer group, and its lag gauge.

Every `dispatcher_commit_interval`, when partitions are revoked, when a lane is retired and when
the consumer stops, each lane commits per partition the offset `Lane.committable` decides (the
lowest still in flight, else where the reading stands) if it moved forward. A failed commit is
logged and left to the next round: the records it covered are delivered again at worst. The lag
gauge (high watermark minus the offset committed) is set on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from dispatcher import metrics
from dispatcher.groups import GroupOffsets
from dispatcher.lane import Lane
from dispatcher.plan import Plan

__all__ = ["Commits", "clear_lag"]

log = logging.getLogger(__name__)


class Commits:
    """Commits the lanes of one topic."""

    def __init__(
        self,
        groups: GroupOffsets,
        position: Callable[[TopicPartition], int | None],
        consumer: Callable[[], AIOKafkaConsumer | None],
    ) -> None:
        self._groups = groups
        self._position = position  # the shared reader's next offset on a partition, if it has one
        self._consumer = consumer  # the shared reader's consumer while it runs, for high watermarks

    async def commit_lane(self, lane: Lane, tps: Iterable[TopicPartition]) -> None:
        offsets: dict[TopicPartition, int] = {}
        consumer = self._consumer()
        for tp in tps:
            offset = lane.committable(tp, self._position(tp))
            if offset is None:
                continue
            if consumer is not None:
                high = consumer.highwater(tp)
                if high is not None:
                    metrics.LAG.labels(*lane.plan.series, str(tp.partition)).set(max(0, high - offset))
            if offset > lane.committed.get(tp, -1):
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await self._groups.commit(lane.plan.group, offsets)
        except KafkaError as exc:
            log.warning("commit for %s failed (will deliver again): %s", lane.key, exc)
            return
        for tp, offset in offsets.items():
            if offset > lane.committed.get(tp, -1):
                lane.committed[tp] = offset

    async def commit_all(self, lanes: Iterable[Lane], tps: list[TopicPartition]) -> None:
        if tps:
            await asyncio.gather(*(self.commit_lane(lane, tps) for lane in list(lanes)))

    async def loop(
        self, interval: float, lanes: Callable[[], Iterable[Lane]], tps: Callable[[], list[TopicPartition]]
    ) -> None:
        """Commit every lane every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.commit_all(lanes(), tps())


def clear_lag(plan: Plan, tp: TopicPartition) -> None:
    """Remove the lag series of `plan` on `tp` (revoked, or the Trigger retired)."""
    with contextlib.suppress(KeyError):
        metrics.LAG.remove(*plan.series, str(tp.partition))
