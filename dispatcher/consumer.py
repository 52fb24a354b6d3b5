"""One Trigger's consumer: read its Broker's topic in the Trigger's consumer group, filter, deliver.

Progress is at-least-once: a record's offset is committed only after its delivery reached a
final outcome (delivered, dead-lettered, or dropped visibly), through `offsets.OffsetTracker`,
which commits per partition the highest offset below which everything is done. Deliveries run
concurrently up to a limit; commits go out every `commit_interval` and synchronously when
partitions are revoked. A killed dispatcher leaves its uncommitted records to the next owner,
which delivers them again: duplicates are possible, loss is not.

A new group starts where the Trigger was created (its creation time, through the broker's time
index), so events accepted between `kanal apply` and the consumer's first join are delivered.
The plan (filter, subscriber, delivery) can be swapped without recreating the consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord

from channel.errors import InvalidEvent
from channel.events import CloudEvent, from_kafka_record
from channel.kafka import HOP_HEADER, client_options
from channel.settings import Settings
from dispatcher import metrics
from dispatcher.dispatch import Dispatcher, Source
from dispatcher.offsets import OffsetTracker
from dispatcher.plan import TriggerPlan

__all__ = ["TriggerConsumer"]

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: TriggerConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner._on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._owner._on_assigned(list(assigned))


class TriggerConsumer:
    def __init__(self, plan: TriggerPlan, settings: Settings, dispatcher: Dispatcher) -> None:
        self.plan = plan
        self._settings = settings
        self._dispatcher = dispatcher
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._limit = asyncio.Semaphore(settings.dispatcher_max_in_flight)
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        # Per partition with no committed offset yet: skip records older than the Trigger.
        self._floor: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._deliveries: set[asyncio.Task[None]] = set()
        # Ordered plans: one lock per partition. Tasks are created in offset order and
        # asyncio.Lock wakes waiters first-in first-out, so deliveries (with their retries)
        # happen one at a time, in order, per partition.
        self._order: dict[TopicPartition, asyncio.Lock] = {}

    def update(self, plan: TriggerPlan) -> None:
        """Swap filter, subscriber and delivery in place; group and topic must be the same."""
        assert plan.identity == self.plan.identity
        self.plan = plan

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        plan = self.plan
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=plan.group,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_poll_interval_ms=600_000,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe([plan.topic], listener=_Rebalance(self))
        log.info("consuming %s for trigger %s (group %s)", plan.topic, plan.key, plan.group)
        try:
            async with asyncio.TaskGroup() as tasks:
                committer = tasks.create_task(self._commit_loop(consumer))
                while not self._stopping.is_set():
                    try:
                        batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    except KafkaError as exc:
                        log.warning("fetch for trigger %s failed: %s", plan.key, exc)
                        await asyncio.sleep(0.5)
                        continue
                    for tp, records in batches.items():
                        if tp not in self._assigned:
                            # Fetched before the assignment listener finished: read it again
                            # once it has, instead of skipping it.
                            if records and tp in consumer.assignment():
                                consumer.seek(tp, records[0].offset)
                            continue
                        for record in records:
                            if self._stopping.is_set() or tp not in self._assigned:
                                break
                            await self._handle(tasks, tp, record)
                await self._drain()
                committer.cancel()
            await self._commit(consumer)
        finally:
            self._consumer = None
            try:
                await consumer.stop()
            except KafkaError as exc:
                log.warning("closing consumer of %s: %s", plan.key, exc)

    async def _handle(self, tasks: asyncio.TaskGroup, tp: TopicPartition, record: ConsumerRecord) -> None:
        plan = self.plan
        self._tracker.begin(tp, record.offset)
        floor = self._floor.get(tp)
        if floor is not None and record.timestamp < floor:
            self._tracker.done(tp, record.offset)  # accepted before the Trigger existed
            return
        try:
            event = from_kafka_record(record.key, record.value, record.headers)
        except InvalidEvent as exc:
            log.warning(
                "skipped record %s[%d]@%d: not a CloudEvent (%s)",
                tp.topic,
                tp.partition,
                record.offset,
                exc,
            )
            metrics.NON_EVENTS.labels(tp.topic).inc()
            self._tracker.done(tp, record.offset)
            return
        if not plan.filter.matches(event.attributes):
            metrics.EVENTS.labels(plan.namespace, plan.name, "filtered").inc()
            self._tracker.done(tp, record.offset)
            return
        source = _source(record)
        await self._limit.acquire()
        task = tasks.create_task(self._deliver(plan, tp, event, source))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(
        self, plan: TriggerPlan, tp: TopicPartition, event: CloudEvent, source: Source
    ) -> None:
        try:
            if plan.ordered:
                lock = self._order.get(tp)
                if lock is None:
                    lock = self._order[tp] = asyncio.Lock()
                async with lock:
                    await self._dispatcher.deliver(plan, event, source)
            else:
                await self._dispatcher.deliver(plan, event, source)
        except Exception:
            # Never let one event stop the partition; it is counted and logged as dropped.
            log.exception("delivery of event id=%s for %s failed unexpectedly", event.id, plan.key)
            metrics.EVENTS.labels(plan.namespace, plan.name, "dropped").inc()
        finally:
            self._limit.release()
        self._tracker.done(tp, source.offset)

    async def _drain(self, timeout: float = 10.0) -> None:
        """Let in-flight deliveries finish, bounded; what does not finish is redelivered later."""
        try:
            async with asyncio.timeout(timeout):
                for _ in range(self._settings.dispatcher_max_in_flight):
                    await self._limit.acquire()
        except TimeoutError:
            log.warning(
                "trigger %s: %d deliveries did not finish within %ss; they will be redelivered",
                self.plan.key,
                len(self._deliveries),
                timeout,
            )
            for task in self._deliveries:
                task.cancel()

    async def _commit_loop(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await asyncio.sleep(self._settings.dispatcher_commit_interval)
            await self._commit(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, only: Iterable[TopicPartition] | None = None) -> None:
        offsets = self._tracker.commits()
        if only is not None:
            keep = set(only)
            offsets = {tp: off for tp, off in offsets.items() if tp in keep}
        offsets = {tp: off for tp, off in offsets.items() if tp in self._assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit for trigger %s failed (will redeliver): %s", self.plan.key, exc)
            return
        self._tracker.mark_committed(offsets)
        for tp in offsets:
            self._floor.pop(tp, None)

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._consumer is not None:
            await self._commit(self._consumer, revoked)
        self._assigned.difference_update(revoked)
        self._tracker.revoke(revoked)
        for tp in revoked:
            self._floor.pop(tp, None)

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        await self._dispatcher.caught_up()
        fresh = []
        for tp in assigned:
            if await consumer.committed(tp) is None:
                fresh.append(tp)
        if fresh:
            created = self.plan.created_ms
            found = await consumer.offsets_for_times({tp: created for tp in fresh})
            for tp in fresh:
                hit = found.get(tp)
                if hit is not None:
                    consumer.seek(tp, hit.offset)
                else:
                    await consumer.seek_to_end(tp)
                self._floor[tp] = created
        self._assigned.update(assigned)


def _source(record: ConsumerRecord) -> Source:
    hops = 0
    trace = None
    for key, value in record.headers or ():
        if key == HOP_HEADER:
            try:
                hops = int(value)
            except ValueError:
                hops = 0
        elif key == "traceparent":
            trace = value.decode("latin-1")
    return Source(record.partition, record.offset, hops, trace)
