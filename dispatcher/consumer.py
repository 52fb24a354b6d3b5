"""Reading a Broker's (or Channel's) topic once and fanning each event out to its Triggers.

One `TopicConsumer` per topic per dispatcher process. Its Kafka consumer is a member of the
topic's dispatcher group (`channel.kafka.dispatcher_group`), so the topic's partitions are spread
over the dispatcher processes, and each record is fetched and decoded once however many Triggers
the topic has. The filter index picks the Triggers that match; each matching Trigger's `Lane`
delivers the event concurrently, up to its own in-flight limit (`dispatcher.workers`).

Progress is per Trigger, at least once. Each lane tracks its records in flight per partition
(`offsets.PartitionOffsets`) and commits (`dispatcher.commits`), to the Trigger's own consumer
group through `groups.GroupOffsets`, the offset below which all its records reached a final
outcome (delivered, dead-lettered or dropped visibly). Commits go out every
`dispatcher_commit_interval` and when partitions are revoked; a killed dispatcher leaves what
was not committed to the next owner, which delivers it again: duplicates are possible, loss is
not. On assignment the shared reader starts at the lowest position of all lanes; each lane skips
what it had already done.

A slow Trigger does not hold up the others. When a lane has `dispatcher_lane_buffer` events
queued, the shared reader waits for it briefly, then detaches it from that partition: the lane
goes on with a reader of its own (`dispatcher.catchup`, no consumer group, manually assigned) from the
first record it did not take, and rejoins the shared reader once it has caught up with it. A
Trigger added while the dispatcher runs is caught up the same way, from its committed offset or
else its start point (`offsets.first_offsets`): the end of each partition when it was created, as
the controller recorded it, so a new Trigger receives exactly the events accepted after it was
created. No record before where a lane begins is offered to it, by the shared reader or its own.
The decisions on a lane's state (what it is offered, how long it is waited for, when it rejoins,
what it commits) are pure functions in `dispatcher.lane`.

Changing a Trigger's filter, subscriber or delivery swaps the plan into its lane; no consumer is
recreated.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from channel.errors import InvalidEvent
from channel.events import from_kafka_record
from channel.filters import FilterIndex
from channel.kafka import client_options, dispatcher_group
from channel.settings import Settings
from dispatcher import metrics
from dispatcher.catchup import CatchUp
from dispatcher.commits import Commits, clear_lag
from dispatcher.dispatch import Dispatcher, Source, source_of
from dispatcher.groups import GroupOffsets
from dispatcher.lane import Lane, detach_wait, offered
from dispatcher.offsets import first_offsets
from dispatcher.plan import Plan
from dispatcher.workers import Workers

__all__ = ["TopicConsumer"]

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: TopicConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._owner._on_assigned(list(assigned))


class TopicConsumer:
    """Reads one topic for all the Triggers (or Subscriptions) on it."""

    def __init__(self, topic: str, settings: Settings, dispatcher: Dispatcher, groups: GroupOffsets) -> None:
        self.topic = topic
        self.group = dispatcher_group(topic)
        self._settings = settings
        self._dispatcher = dispatcher
        self._groups = groups
        self._lanes: dict[str, Lane] = {}
        self._index: FilterIndex[str] = FilterIndex()
        self._assigned: set[TopicPartition] = set()
        # Per partition, the next offset the shared reader hands out: every record below it has
        # been offered to the lanes attached at the time.
        self._position: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._workers = Workers(topic, dispatcher, self._stopping, lambda: self._tasks)
        self._catch_up = CatchUp(topic, settings, self, self._workers, self._stopping, lambda: self._tasks)
        self._commits = Commits(groups, self._position.get, lambda: self._consumer)

    # -- plans ----------------------------------------------------------------------------

    def set_plans(self, plans: Mapping[str, Plan]) -> None:
        """Make the lanes match `plans` (every plan on this topic): add, update, retire."""
        for key in list(self._lanes):
            plan = plans.get(key)
            if plan is None or plan.group != self._lanes[key].plan.group:
                self._retire(self._lanes.pop(key))
        for key, plan in plans.items():
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = Lane(plan, self._settings)
                metrics.track_protection(plan.series, lane.gate)
                self._index.add(key, plan.filter)
                if self._tasks is not None and self._assigned:
                    self._tasks.create_task(self._join(lane, sorted(self._assigned)))
            else:
                if plan.series != lane.plan.series:
                    metrics.forget_protection(lane.plan.series, lane.gate)
                    metrics.track_protection(plan.series, lane.gate)
                lane.set_plan(plan)
                self._index.add(key, plan.filter)

    @property
    def lanes(self) -> Mapping[str, Lane]:
        return self._lanes

    def stop(self) -> None:
        self._stopping.set()
        for lane in self._lanes.values():
            lane.gate.close()  # deliveries waiting for their subscriber's limits are not begun
            metrics.forget_protection(lane.plan.series, lane.gate)

    # -- what a lane's own reader asks (catchup.SharedReader) -------------------------------

    def position(self, tp: TopicPartition) -> int:
        return self._position.get(tp, 0)

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._assigned

    # -- the shared reader ----------------------------------------------------------------

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_poll_interval_ms=600_000,
            fetch_max_wait_ms=self._settings.event_fetch_max_wait_ms(),
            **self._settings.group_options(),
            # Not aiokafka's sticky assignor: its subscription carries the member's current
            # assignment, so a member that rejoins late (this listener's assignment callback reads
            # committed offsets and may take seconds) rejoins with changed metadata, which starts
            # yet another rebalance; three dispatchers then rebalanced for minutes and delivered
            # nothing. Round robin's subscription never changes, so a late rejoin changes nothing.
            # Partitions may move more at a rebalance; what a revoked partition had in flight is
            # committed and delivered again at worst.
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe([self.topic], listener=_Rebalance(self))
        log.info("reading %s for %d trigger(s) (group %s)", self.topic, len(self._lanes), self.group)
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                committer = tasks.create_task(
                    self._commits.loop(
                        self._settings.dispatcher_commit_interval,
                        lambda: self._lanes.values(),
                        lambda: list(self._assigned),
                    )
                )
                while not self._stopping.is_set():
                    try:
                        batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    except KafkaError as exc:
                        log.warning("fetch from %s failed: %s", self.topic, exc)
                        await asyncio.sleep(0.5)
                        continue
                    for tp, records in batches.items():
                        if tp not in self._assigned:
                            # Fetched before the assignment listener finished: read it again
                            # once it has, instead of skipping it.
                            if records and tp in consumer.assignment():
                                consumer.seek(tp, records[0].offset)
                            continue
                        await self._fan_out(tp, records)
                await self._workers.drain(list(self._lanes.values()))
                committer.cancel()
            await self._commit_all(self._assigned)
        finally:
            self._tasks = None
            self._consumer = None
            try:
                await consumer.stop()
            except KafkaError as exc:
                log.warning("closing the consumer of %s: %s", self.topic, exc)

    async def _fan_out(self, tp: TopicPartition, records: list[ConsumerRecord]) -> None:
        lanes = self._lanes
        valid: list[int] = []
        last_stamp = 0
        matched: dict[str, int] = {}
        for record in records:
            if self._stopping.is_set() or tp not in self._assigned:
                break
            offset = record.offset
            # Set before the lanes are offered the record (and before any wait below), so a
            # lane rejoining meanwhile starts after it.
            self._position[tp] = offset + 1
            try:
                event = from_kafka_record(record.key, record.value, record.headers)
            except InvalidEvent as exc:
                _skip_invalid(tp, record, exc)
                continue
            valid.append(offset)
            last_stamp = record.timestamp
            keys = self._index.match(event.attributes)
            if not keys:
                continue
            source: Source | None = None
            for key in keys:
                lane = lanes.get(key)
                if lane is None:
                    continue
                if not offered(lane.start.get(tp), offset):
                    continue
                if lane.floor.refuses(tp, record.timestamp):
                    continue
                if lane.full() and not await self._wait_for_room(lane, tp, offset):
                    continue
                if source is None:
                    source = source_of(record)
                matched[key] = matched.get(key, 0) + 1
                self._workers.begin(lane, tp, event, source)
        if valid:
            for key, lane in lanes.items():
                start = lane.start.get(tp)
                if start is None:
                    continue
                eligible = len(valid) - bisect.bisect_left(valid, start)
                if eligible > 0:
                    # A lane is offered only the records its filter selects; the last record
                    # read tells it too whether its creation boundary has gone by.
                    lane.floor.reached(tp, last_stamp)
                filtered = eligible - matched.get(key, 0)
                if filtered > 0:
                    metrics.EVENTS.labels(*lane.plan.series, "filtered").inc(filtered)

    async def _wait_for_room(self, lane: Lane, tp: TopicPartition, offset: int) -> bool:
        """Wait for a full lane; if waiting would delay other lanes too long, detach it from `tp`.

        How long it may wait is `lane.detach_wait`'s decision; a lane that needs more is slower
        than the others and goes on reading by itself from `offset`.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        alone = not any(other is not lane and tp in other.start for other in self._lanes.values())
        lane.window, lane.waited, timeout = detach_wait(began, lane.window, lane.waited, alone)
        try:
            async with asyncio.timeout(timeout):
                while lane.full() and tp in lane.start and not self._stopping.is_set():
                    lane.room.clear()
                    await lane.room.wait()
        except TimeoutError:
            pass
        lane.waited += loop.time() - began
        if not lane.full() and tp in lane.start:
            return True
        if tp in lane.start and tp in self._assigned:
            del lane.start[tp]
            lane.catching[tp] = offset
            lane.moved = True
            log.info(
                "trigger %s is behind on %s[%d] at offset %d; reading it separately",
                lane.key,
                tp.topic,
                tp.partition,
                offset,
            )
            self._catch_up.ensure_reader(lane)
        return False

    # -- assignment -----------------------------------------------------------------------

    async def _starts(
        self, consumer: AIOKafkaConsumer, lane: Lane, tps: list[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int | None]]:
        """Where `lane` resumes on each partition, and the creation-time floor it needs there if any:
        its committed offset, else its start point, else (a Trigger created before start points
        were recorded) its creation time."""
        committed = await self._groups.fetch(lane.plan.group, tps)
        start = lane.plan.start
        fresh = [tp for tp in tps if tp not in committed]
        log_starts = await consumer.beginning_offsets(fresh) if fresh and start is not None else {}
        placed = first_offsets(tps, committed, start, log_starts)
        out: dict[TopicPartition, tuple[int, int | None]] = {tp: (off, None) for tp, off in placed.items()}
        dated = [tp for tp in tps if tp not in placed]
        if dated:
            created = lane.plan.created_ms
            by_time = await consumer.offsets_for_times({tp: created for tp in dated})
            missing = [tp for tp in dated if by_time.get(tp) is None]
            ends = await consumer.end_offsets(missing) if missing else {}
            for tp in dated:
                hit = by_time.get(tp)
                # The floor keeps older records out where the broker's answers are early.
                out[tp] = (hit.offset if hit is not None else ends.get(tp, 0), created)
        return out

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        await self._dispatcher.caught_up()
        if self._consumer is None:
            return  # stopped meanwhile: the partitions' next owner starts them
        lanes = list(self._lanes.values())
        starts = await asyncio.gather(*(self._starts(consumer, lane, assigned) for lane in lanes))
        for tp in assigned:
            positions = [found[tp][0] for found in starts if tp in found]
            if positions:
                position = min(positions)
                consumer.seek(tp, position)
            else:
                await consumer.seek_to_end(tp)
                position = await consumer.position(tp)
            self._position[tp] = position
        for lane, found in zip(lanes, starts, strict=True):
            for tp, (offset, floor) in found.items():
                lane.forget(tp)
                lane.start[tp] = offset
                if floor is not None:
                    lane.floor.set(tp, floor)
        self._assigned.update(assigned)
        # Triggers added while the offsets above were being read start like any new Trigger.
        for lane in self._lanes.values():
            if lane not in lanes and self._tasks is not None:
                self._tasks.create_task(self._join(lane, assigned))

    async def _join(self, lane: Lane, tps: list[TopicPartition]) -> None:
        """A Trigger added while running: catch it up on the partitions this process reads."""
        consumer = self._consumer
        if consumer is None:
            return  # stopping: the partitions' next owner starts it
        try:
            found = await self._starts(consumer, lane, tps)
        except KafkaError as exc:
            log.warning("cannot start trigger %s on %s yet: %s", lane.key, self.topic, exc)
            found = {}
        if lane.retired:
            return
        for tp, (offset, floor) in found.items():
            if tp not in self._assigned or tp in lane.start or tp in lane.catching:
                continue
            if floor is not None:
                lane.floor.set(tp, floor)
            if offset >= self._position.get(tp, 0):
                lane.start[tp] = offset
            else:
                lane.catching[tp] = offset
                lane.moved = True
        if lane.catching:
            self._catch_up.ensure_reader(lane)

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._commit_all(revoked)
        self._assigned.difference_update(revoked)
        for tp in revoked:
            self._position.pop(tp, None)
            for lane in self._lanes.values():
                lane.forget(tp)
                clear_lag(lane.plan, tp)

    # -- commits --------------------------------------------------------------------------

    async def _commit_all(self, tps: Iterable[TopicPartition]) -> None:
        await self._commits.commit_all(self._lanes.values(), [tp for tp in tps if tp in self._assigned])

    # -- retiring -------------------------------------------------------------------------

    def _retire(self, lane: Lane) -> None:
        """A Trigger deleted (or re-created): stop feeding it, finish what it has, commit."""
        lane.retired = True
        lane.gate.close()
        metrics.forget_protection(lane.plan.series, lane.gate)
        self._index.remove(lane.key)
        if self._tasks is not None:
            self._tasks.create_task(self._retire_lane(lane))

    async def _retire_lane(self, lane: Lane) -> None:
        await self._workers.drain([lane])
        await self._commits.commit_lane(lane, [tp for tp in self._assigned])
        for tp in self._assigned:
            clear_lag(lane.plan, tp)


def _skip_invalid(tp: TopicPartition, record: ConsumerRecord, exc: InvalidEvent) -> None:
    log.warning("skipped record %s[%d]@%d: not a CloudEvent (%s)", tp.topic, tp.partition, record.offset, exc)
    metrics.NON_EVENTS.labels(tp.topic).inc()
