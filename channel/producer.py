"""Where accepted events go: a Protocol and its Kafka implementation (the in-memory fake for tests
is tests/support/memory_sink.py).

`submit` calls back (and `send` returns) only when every record is acknowledged (acks=all), or
with Unavailable when Kafka cannot take them within the configured time, or with TooLarge when
Kafka refuses one of them as larger than its topic takes: the ingress answers 202 only after
that, so a 202 always means the event is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    UnknownProducerId,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from channel.errors import KanalError, TooLarge, Unavailable
from channel.events import KafkaRecord

__all__ = ["SENDER_TURNS", "STICKY_BYTES", "Done", "EventSink", "KafkaEventSink"]

log = logging.getLogger(__name__)

# Keyless records stay on one partition until the values written to it reach this many bytes, as
# Kafka's own producer does (KIP-794 switches after batch.size, 16 KiB by default).
STICKY_BYTES = 16 * 1024

# Turns of the event loop between handing a flush to aiokafka and its produce request being
# written (the writer task, the accumulator's waiter, the sender task, its send task), plus one
# to spare: tests/integration/test_event_sink.py checks that the next request still goes first.
SENDER_TURNS = 5

# Called once, from the event loop: with None when every record is acknowledged, or the error
# (Unavailable, retryable; or TooLarge, not).
Done = Callable[[KanalError | None], None]

# What Kafka answers for a batch larger than the topic's max.message.bytes (or a segment).
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)

# What Kafka answers an idempotent producer whose sequence numbers no longer match its log: every
# later batch of that partition is refused the same way, for as long as the producer lives.
# aiokafka gives a batch up after taking its sequence number when its partition has had no
# leader for longer than the request timeout (all of a cluster restarting, say), and does not
# recover from the gap it leaves, as Kafka's own producer does by bumping its epoch.
_SEQUENCE_LOST = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch, InvalidProducerIdMapping)


class EventSink(Protocol):
    def submit(self, topic: str, records: Sequence[KafkaRecord], done: Done) -> None:
        """Start writing; `done` is called later (never from within `submit`)."""
        ...

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        """Write and wait; raises Unavailable or TooLarge."""
        ...


async def _sent(sink: EventSink, topic: str, records: Sequence[KafkaRecord]) -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sink.submit(topic, records, partial(_settle, future))
    await future


def _settle(future: asyncio.Future[None], error: KanalError | None) -> None:
    if future.done():  # the sender stopped waiting
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _Flush:
    """The records of every `send` to one topic since the writer last took that topic's records,
    and the callers waiting for them: they are written together and answered together, each
    caller with the outcome of the batches its own records went into."""

    __slots__ = (
        "batches",
        "deadline",
        "ends",
        "error",
        "failed",
        "finished",
        "outstanding",
        "placed",
        "records",
        "sealed",
        "timer",
        "topic",
        "waiters",
    )

    def __init__(self, topic: str, deadline: float) -> None:
        self.topic = topic
        self.deadline = deadline  # loop time by which the callers are answered
        self.records: list[KafkaRecord] = []
        self.waiters: list[Done] = []
        self.ends: list[int] = []  # per waiter, the index in `records` after its last record
        self.placed: list[int] | None = None  # per record, the index of the batch it went into
        self.batches = 0  # batch indices given out (a resent record's batch gets the next)
        self.failed: dict[int, KanalError] = {}  # batches not stored, by index
        self.timer: asyncio.TimerHandle | None = None
        self.outstanding = 0  # batches handed to the producer and not yet acknowledged
        self.sealed = False  # every batch of this flush has been handed over (or one failed)
        self.error: Unavailable | None = None  # for every caller: no batch made, or out of time
        self.finished = False


class KafkaEventSink:
    """Writes records as record batches it builds itself, one writer task per sink.

    Every `send` to a topic made while the writer is busy joins the same pending flush, so under
    load one produce request carries the records of many HTTP requests, and the per-record work
    of aiokafka's `send()` (a future, a partitioner call, an accumulator lookup per record) is
    done once per batch. Partitioning follows Kafka's: a record with a key goes to murmur2(key)'s
    partition, the same one aiokafka's default partitioner and the Java client choose. Records
    without one stick to one partition until about STICKY_BYTES of values went to it (or its
    batch is full), then move to the next in turn, as Kafka's own producer does (KIP-794):
    batches stay whole instead of one small batch per partition, and at a low rate a consumer's
    fetch finds new records in one or two partitions rather than in all of them. A Trigger in
    ordered mode therefore gets runs of keyless events from one partition, one at a time;
    events that must keep an order per entity but may go in parallel across entities carry a
    partitionkey.

    One flush per topic is with the producer at a time: the records of every `send` made while the
    producer has it wait here and go together as the next one. aiokafka puts one request per broker
    on the wire at a time anyway, so they would wait as long in its queue; here they wait as one
    flush rather than as two or three smaller ones, and a produce request costs the ingress about
    150 us of CPU whatever its size (measured under load on the embedded broker). When a flush is
    acknowledged and the next is waiting, the next is handed over first and the callers of the
    acknowledged one are answered SENDER_TURNS turns of the event loop later, once aiokafka's
    sender has put the next in a request: answering 30 requests takes about 0.3 ms, and Kafka
    works on the next write meanwhile instead of after.

    Each caller is answered with the outcome of the batches its own records went into: a batch
    Kafka refuses (say, a partition whose leader is down) fails the callers with records in it,
    and the others, whose records are stored, are told so rather than asked to send them again.
    A batch refused as larger than the topic takes (`max.message.bytes`) goes again one record
    per batch, so only a caller whose own record is too large is told TooLarge.

    A flush not handed to the producer by the callers' deadline never is: their Unavailable (the
    ingress's 503) then means "not stored". A flush handed over can still be stored after its
    callers timed out (that 503 is ambiguous, as with any Kafka producer). The topic's next flush
    waits until the producer is done with it (acknowledged, or failed by aiokafka's own request
    timeout), not only until its callers were answered: while Kafka does not answer, one flush
    per topic per request timeout is handed over, and the callers waiting behind it get a 503
    that means "not stored".
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        timeout: float,
        *,
        renew: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self._producer = producer
        self._timeout = timeout
        # Makes a producer to take over when Kafka refuses this one's sequence numbers (None: the
        # caller owns the producer, and such a refusal stays a 503 until it replaces it).
        self._renew = renew
        self._renewal: asyncio.Task[None] | None = None
        self._open: dict[str, _Flush] = {}
        # Per topic, the flush handed to the producer that the producer is not done with.
        self._with_producer: dict[str, _Flush] = {}
        self._writer: asyncio.Task[None] | None = None
        # Per topic: the partition keyless records go to, and the bytes of values written to it.
        self._sticky: dict[str, tuple[int, int]] = {}
        self._partitioner = DefaultPartitioner()
        self._resends: set[asyncio.Task[None]] = set()
        # Set when a write failed, cleared by the next that succeeds: readiness reports it.
        self.failing = False
        # Told of every batch Kafka acknowledged, before its callers are answered: its topic,
        # partition, first offset and record count (the ingress's deduplication follower knows
        # its own writes by it).
        self.written: Callable[[str, int, int, int], None] | None = None

    def healthy(self) -> bool:
        """False from a failed write until a write succeeds again."""
        return not self.failing

    @property
    def producer(self) -> AIOKafkaProducer:
        """The producer writes go to now (another one after a renewal)."""
        return self._producer

    async def close(self) -> None:
        """Stop the producer (after a renewal under way, the one it made)."""
        if self._renewal is not None:
            await asyncio.gather(self._renewal, return_exceptions=True)
        await self._producer.stop()

    def _sequence_lost(self, error: BaseException) -> None:
        """Kafka refused a batch for its sequence number: replace the producer (a new one gets a
        new producer id, whose sequences start afresh). The batches the old one still holds are
        refused the same way, so their callers get a 503 and send them again."""
        if self._renew is None or self._renewal is not None:
            return
        log.warning("Kafka refused the producer's sequence numbers (%s); starting a new producer", error)
        self._renewal = asyncio.get_running_loop().create_task(self._replace(self._renew))

    async def _replace(self, renew: Callable[[], AIOKafkaProducer]) -> None:
        try:
            fresh = renew()
            try:
                await fresh.start()
            except BaseException:
                await fresh.stop()
                raise
            old, self._producer = self._producer, fresh
            # Bounded: the old producer's batches are refused at once, but one whose partition
            # has no leader waits; a producer that will not stop is left to the collector.
            try:
                async with asyncio.timeout(self._timeout * 2):
                    await old.stop()
            except (TimeoutError, KafkaError) as exc:
                log.warning("the replaced producer did not stop cleanly: %r", exc)
            log.info("a new producer took over")
        except KafkaError as exc:
            log.warning("starting a new producer failed (%s); trying again at the next refusal", exc)
        finally:
            self._renewal = None

    async def send(self, topic: str, records: Sequence[KafkaRecord]) -> None:
        await _sent(self, topic, records)

    def submit(self, topic: str, records: Sequence[KafkaRecord], done: Done) -> None:
        flush = self._open.get(topic)
        if flush is None:
            loop = asyncio.get_running_loop()
            flush = self._open[topic] = _Flush(topic, loop.time() + self._timeout)
            flush.timer = loop.call_at(flush.deadline, self._expire, flush)
        flush.records.extend(records)
        flush.waiters.append(done)
        flush.ends.append(len(flush.records))
        if topic not in self._with_producer:
            self._start_writer()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Hands each pending flush whose topic has none with the producer over, then exits;
        `submit` and a topic's settled flush start it again."""
        try:
            while True:
                ready = [topic for topic in self._open if topic not in self._with_producer]
                if not ready:
                    return
                for topic in ready:
                    flush = self._open.pop(topic, None)  # None: it expired meanwhile
                    if flush is not None:
                        self._with_producer[topic] = flush
                        await self._write_flush(flush)
        finally:
            self._writer = None

    async def _write_flush(self, flush: _Flush) -> None:
        topic = flush.topic
        batches: list[tuple[int, BatchBuilder]] = []
        handed = 0
        error: Unavailable | None = None
        try:
            # send_batch waits while the partition's previous batch is still queued: bounded by
            # the callers' deadline, so a batch not handed over by then never is.
            async with asyncio.timeout_at(flush.deadline):
                batches, flush.placed = await self._batches(topic, flush.records)
                flush.batches = len(batches)
                for partition, batch in batches:
                    if flush.finished:
                        break
                    future = await self._producer.send_batch(batch, topic, partition=partition)
                    future.add_done_callback(partial(self._batch_done, flush, handed, partition))
                    handed += 1
                    flush.outstanding += 1
        except TimeoutError:
            error = Unavailable(f"Kafka did not take the write within {self._timeout}s")
        except KafkaError as exc:
            error = Unavailable(f"Kafka refused the write: {exc}")
        if error is not None:
            if flush.placed is None:
                flush.error = error  # no batch was made
            for index in range(handed, len(batches)):
                flush.failed[index] = error  # never handed over: never stored
        flush.sealed = True
        if flush.outstanding == 0:
            self._settled(flush)

    async def _batches(
        self, topic: str, records: list[KafkaRecord]
    ) -> tuple[list[tuple[int, BatchBuilder]], list[int]]:
        """The records as closed batches with their partitions, in order within each partition,
        and for each record the index of its batch."""
        partitions = sorted(await self._producer.partitions_for(topic))
        batches: list[tuple[int, BatchBuilder]] = []
        placed: list[int] = []
        # The batch being filled per partition, with its index in `batches`.
        open_batches: dict[int, tuple[BatchBuilder, int]] = {}
        sticky, written = self._sticky.get(topic, (0, 0))
        sticky %= len(partitions)
        for record in records:
            if record.key is not None:
                partition = self._partitioner(record.key, partitions, partitions)
            else:
                partition = partitions[sticky]
                written += len(record.value or b"")
            current = open_batches.get(partition)
            if current is not None and _append(current[0], record):
                placed.append(current[1])
                continue
            if current is not None and record.key is None:
                # The sticky partition's batch is full: the next partition takes the rest.
                sticky = (sticky + 1) % len(partitions)
                partition = partitions[sticky]
                written = len(record.value or b"")
                current = open_batches.get(partition)
                if current is not None and _append(current[0], record):
                    placed.append(current[1])
                    continue
            batch = self._producer.create_batch()
            open_batches[partition] = (batch, len(batches))
            placed.append(len(batches))
            batches.append((partition, batch))
            _append(batch, record)  # the first record always fits, whatever its size
        if written >= STICKY_BYTES:
            sticky, written = sticky + 1, 0
        self._sticky[topic] = (sticky, written)
        for _, batch in batches:
            batch.close()
        return batches, placed

    def _batch_done(self, flush: _Flush, index: int, partition: int, future: asyncio.Future[object]) -> None:
        flush.outstanding -= 1
        if future.cancelled():
            flush.failed[index] = Unavailable("the write was cancelled")
        elif isinstance(exc := future.exception(), _TOO_LARGE):
            self._too_large(flush, index, partition)
        elif exc is not None:
            flush.failed[index] = Unavailable(f"Kafka refused the write: {exc}")
            if isinstance(exc, _SEQUENCE_LOST):
                self._sequence_lost(exc)
        elif self.written is not None and flush.placed is not None:
            metadata = future.result()
            self.written(flush.topic, partition, metadata.offset, flush.placed.count(index))  # type: ignore[attr-defined]
        if flush.sealed and flush.outstanding == 0:
            self._settled(flush)

    def _too_large(self, flush: _Flush, index: int, partition: int) -> None:
        """Kafka refused batch `index` (of `partition`) as larger than the topic takes. A batch of
        one record fails its caller for good; the records of a larger batch go again one per
        batch (any smaller batch could be refused again), so each caller learns whether its own
        record fits."""
        assert flush.placed is not None
        members = [i for i, batch in enumerate(flush.placed) if batch == index]
        if len(members) == 1:
            size = _size(flush.records[members[0]])
            flush.failed[index] = TooLarge(
                f"Kafka refused an event of {size} bytes as larger than topic {flush.topic} takes"
                " (its max.message.bytes)"
            )
            return
        flush.outstanding += 1  # until each record is handed over again
        task = asyncio.get_running_loop().create_task(self._one_by_one(flush, index, partition, members))
        self._resends.add(task)
        task.add_done_callback(self._resends.discard)

    async def _one_by_one(self, flush: _Flush, index: int, partition: int, members: list[int]) -> None:
        assert flush.placed is not None
        try:
            async with asyncio.timeout_at(flush.deadline):
                for member in members:
                    if flush.finished:
                        break
                    batch = self._producer.create_batch()
                    _append(batch, flush.records[member])
                    batch.close()
                    future = await self._producer.send_batch(batch, flush.topic, partition=partition)
                    alone = flush.batches
                    flush.batches += 1
                    flush.placed[member] = alone
                    flush.outstanding += 1
                    future.add_done_callback(partial(self._batch_done, flush, alone, partition))
        except TimeoutError:
            # Records not handed over again still point at the refused batch.
            flush.failed[index] = Unavailable(f"Kafka did not take the write within {self._timeout}s")
        except KafkaError as exc:
            flush.failed[index] = Unavailable(f"Kafka refused the write: {exc}")
        finally:
            flush.outstanding -= 1
            if flush.sealed and flush.outstanding == 0:
                self._settled(flush)

    def _settled(self, flush: _Flush) -> None:
        """The producer is done with `flush` (every batch acknowledged or failed, or none handed
        over): the topic's next flush may go, and the callers are answered unless they were."""
        topic = flush.topic
        if self._with_producer.get(topic) is flush:
            del self._with_producer[topic]
            if topic in self._open:
                # The next flush goes to Kafka first; these callers are answered meanwhile.
                self._start_writer()
                self._finish(flush, later=True)
                return
        self._finish(flush)

    def _finish(self, flush: _Flush, later: bool = False) -> None:
        if flush.finished:
            return
        flush.finished = True
        if flush.timer is not None:
            flush.timer.cancel()
        # A record too large for its topic is its sender's problem, not Kafka's health.
        self.failing = flush.error is not None or any(e.retryable for e in flush.failed.values())
        if later:
            self._answer_later(flush, SENDER_TURNS)
        else:
            self._answer(flush)

    def _answer_later(self, flush: _Flush, turns: int) -> None:
        if turns == 0:
            self._answer(flush)
        else:
            asyncio.get_running_loop().call_soon(self._answer_later, flush, turns - 1)

    def _answer(self, flush: _Flush) -> None:
        error = flush.error
        failed = flush.failed
        placed = flush.placed
        start = 0
        for done, end in zip(flush.waiters, flush.ends, strict=True):
            mine: KanalError | None = error
            if mine is None and failed and placed is not None:
                # Only a batch holding one of this caller's records decides its answer: the
                # others' records may be stored, and a 503 would have them sent again.
                for index in placed[start:end]:
                    mine = failed.get(index)
                    if mine is not None:
                        break
            start = end
            try:
                done(mine)
            except Exception:  # one caller's failure must not leave the others unanswered
                log.exception("answering a write's caller failed")

    def _expire(self, flush: _Flush) -> None:
        if self._open.get(flush.topic) is flush:
            del self._open[flush.topic]  # not handed over: none of it will be written
        flush.error = Unavailable(f"Kafka did not acknowledge within {self._timeout}s")
        flush.timer = None
        self._finish(flush)


def _size(record: KafkaRecord) -> int:
    """About the bytes `record` takes in a batch: key, value and headers."""
    size = len(record.key or b"") + len(record.value or b"")
    return size + sum(len(name) + len(value) for name, value in record.headers)


def _append(batch: BatchBuilder, record: KafkaRecord) -> bool:
    added = batch.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)
    return added is not None
