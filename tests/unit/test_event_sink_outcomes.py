"""Each caller of the Kafka sink gets the outcome of the batches its own records went into.

A batch can fail while the others of the same flush are stored: in a Kafka cluster, a partition
whose leader is down fails after the producer's retries while the other brokers' partitions take
their batches. The embedded broker has one node and accepts every size, so it cannot fail one
batch alone; a stand-in producer does it here, with aiokafka's own batch builder. The paths the
real broker can drive (all stored, nothing handed over in time) are in
tests/integration/test_event_sink.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    OutOfOrderSequenceNumber,
)
from aiokafka.partitioner import DefaultPartitioner

from channel.errors import KanalError, TooLarge, Unavailable
from channel.events import KafkaRecord
from channel.producer import KafkaEventSink

PARTITIONS = [0, 1]


class _Producer:
    """Takes batches as aiokafka's producer does; acknowledges each at once, except on the
    partitions named in `refuse` (the batch's future fails) and `not_taken` (send_batch raises:
    the batch is never handed over), and batches over `max_bytes` (refused as Kafka refuses a
    batch over the topic's max.message.bytes)."""

    def __init__(
        self, refuse: set[int] = frozenset(), not_taken: set[int] = frozenset(), max_bytes: int = 1 << 30
    ) -> None:
        # Never started, so never connects: only its batch builder is used.
        self._real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", enable_idempotence=False)
        self.refuse = refuse
        self.not_taken = not_taken
        self.max_bytes = max_bytes
        self.taken: list[tuple[int, int]] = []  # (partition, record count) of each batch handed over

    async def partitions_for(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    def create_batch(self) -> Any:
        return self._real.create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
        if partition in self.not_taken:
            raise KafkaError("not taken")
        self.taken.append((partition, batch.record_count()))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if partition in self.refuse:
            future.set_exception(NotLeaderForPartitionError())
        elif batch.size() > self.max_bytes:
            future.set_exception(MessageSizeTooLargeError())
        else:
            future.set_result(None)
        return future


def _key_for(partition: int) -> bytes:
    """A record key that murmur2 puts on `partition` of two."""
    partitioner = DefaultPartitioner()
    for n in range(1000):
        key = b"key-%d" % n
        if partitioner(key, PARTITIONS, PARTITIONS) == partition:
            return key
    raise AssertionError("no key found")


def _record(partition: int, name: str, size: int = 0) -> KafkaRecord:
    return KafkaRecord(_key_for(partition), name.encode().ljust(size, b"x"), [])


async def _outcomes(producer: _Producer, sends: dict[str, list[KafkaRecord]]) -> dict[str, KanalError | None]:
    """Every send submitted in one loop turn (so in one flush), and what each caller got."""
    sink = KafkaEventSink(producer, timeout=5)  # type: ignore[arg-type]  # a stand-in, see above
    got: dict[str, KanalError | None] = {}
    answered = asyncio.Event()

    def done(name: str, error: KanalError | None) -> None:
        got[name] = error
        if len(got) == len(sends):
            answered.set()

    for name, records in sends.items():
        sink.submit("topic", records, lambda error, name=name: done(name, error))
    async with asyncio.timeout(5):
        await answered.wait()
    # Readiness reports Kafka's health: a record too large for its topic says nothing about it.
    assert sink.failing is any(error is not None and error.retryable for error in got.values())
    return got


SENDS = {
    "only-on-0": [_record(0, "a")],
    "only-on-1": [_record(1, "b")],
    "on-both": [_record(0, "c"), _record(1, "d")],
    "empty-batch": [],
    "also-on-0": [_record(0, "e"), _record(0, "f")],
}


async def test_every_batch_stored_every_caller_told_so() -> None:
    producer = _Producer()
    got = await _outcomes(producer, SENDS)
    assert got == dict.fromkeys(SENDS)
    assert sorted(producer.taken) == [(0, 4), (1, 2)]  # one flush: one batch per partition


@pytest.mark.parametrize("failure", ["refused", "not taken"])
async def test_a_failed_batch_fails_only_the_callers_with_records_in_it(failure: str) -> None:
    producer = _Producer(refuse={1}) if failure == "refused" else _Producer(not_taken={1})
    got = await _outcomes(producer, SENDS)
    assert got["only-on-0"] is None and got["also-on-0"] is None and got["empty-batch"] is None
    assert isinstance(got["only-on-1"], Unavailable) and isinstance(got["on-both"], Unavailable)
    assert (0, 4) in producer.taken


async def test_no_batch_made_fails_every_caller() -> None:
    class NoMetadata(_Producer):
        async def partitions_for(self, topic: str) -> set[int]:
            raise KafkaError("no metadata")

    got = await _outcomes(NoMetadata(), {"a": [_record(0, "a")], "empty": []})
    assert all(isinstance(error, Unavailable) for error in got.values())


async def test_a_batch_too_large_for_the_topic_goes_again_one_record_per_batch() -> None:
    """Kafka refuses a batch over the topic's max.message.bytes whole. Its records go again one by
    one: the callers whose records fit are told they are stored, and only the caller whose own
    record is too large is told TooLarge (the ingress's 413), which sending again cannot help."""
    producer = _Producer(max_bytes=2_000)
    big_record = _record(0, "big", 5_000)
    sends = {
        "small": [_record(0, "small", 600)],
        "big": [big_record],
        "small-and-other-partition": [_record(0, "also-small", 600), _record(1, "other", 600)],
        "small-too": [_record(0, "small-too", 600)],
    }
    got = await _outcomes(producer, sends)
    assert got["small"] is None and got["small-too"] is None
    assert got["small-and-other-partition"] is None
    big = got["big"]
    assert isinstance(big, TooLarge) and not big.retryable
    size = len(big_record.key or b"") + 5_000
    assert f"event of {size} bytes" in str(big) and "topic topic" in str(big)
    assert "max.message.bytes" in str(big)
    # The refused batch of four, then each of its records alone, in their order.
    assert [taken for taken in producer.taken if taken[0] == 0] == [(0, 4), (0, 1), (0, 1), (0, 1), (0, 1)]
    assert (1, 1) in producer.taken


async def test_a_record_too_large_alone_is_refused_without_sending_it_again() -> None:
    producer = _Producer(max_bytes=2_000)
    got = await _outcomes(producer, {"big": [_record(0, "big", 5_000)], "other": [_record(1, "b")]})
    assert isinstance(got["big"], TooLarge) and got["other"] is None
    assert sorted(producer.taken) == [(0, 1), (1, 1)]


async def test_records_not_handed_over_again_are_unavailable() -> None:
    """The one-by-one writes can fail like any other (here: Kafka does not take them); those
    callers get Unavailable, a 503 to send again."""

    class TakesOneBatch(_Producer):
        async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
            if self.taken:
                raise KafkaError("not taken")
            return await super().send_batch(batch, topic, partition=partition)

    producer = TakesOneBatch(max_bytes=1_000)
    got = await _outcomes(producer, {"a": [_record(0, "a", 600)], "b": [_record(0, "b", 600)]})
    assert isinstance(got["a"], Unavailable) and isinstance(got["b"], Unavailable)
    assert producer.taken == [(0, 2)]


class _Startable(_Producer):
    """A stand-in that can be started and stopped, as the sink's renewal does."""

    def __init__(self) -> None:
        super().__init__()
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


class _SequenceLost(_Startable):
    """A producer whose sequence numbers Kafka no longer accepts: every batch of partition 1
    fails with OutOfOrderSequenceNumber, as after aiokafka gave a batch up past its number."""

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.taken.append((partition, batch.record_count()))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if partition == 1:
            future.set_exception(OutOfOrderSequenceNumber())
        else:
            future.set_result(None)
        return future


async def _send(sink: KafkaEventSink, records: list[KafkaRecord]) -> KanalError | None:
    try:
        await sink.send("topic", records)
    except KanalError as error:
        return error
    return None


async def test_a_producer_whose_sequence_kafka_refuses_is_replaced() -> None:
    """The refused callers get a 503 (their events are not stored); a new producer takes over,
    the old one is stopped, and the next write of the same partition is stored."""
    poisoned = _SequenceLost()
    fresh = _Startable()
    made: list[_Startable] = []

    def renew() -> Any:
        made.append(fresh)
        return fresh

    sink = KafkaEventSink(poisoned, timeout=5, renew=renew)  # type: ignore[arg-type]
    refused = await _send(sink, [_record(1, "a")])
    assert isinstance(refused, Unavailable) and "OutOfOrderSequenceNumber" in str(refused)
    assert await _send(sink, [_record(0, "b")]) is None  # other partitions are not affected
    async with asyncio.timeout(5):
        while sink.producer is not fresh:
            await asyncio.sleep(0.01)
    assert made == [fresh] and fresh.started and poisoned.stopped
    assert await _send(sink, [_record(1, "c")]) is None
    assert fresh.taken[-1] == (1, 1)
    assert [taken for taken in poisoned.taken if taken[0] == 1] == [(1, 1)]


async def test_without_renew_the_refusal_stays_a_503() -> None:
    """The short-lived commands (replay, redrive) own their producer: no renewal, each write of
    the partition is refused, never reported stored."""
    poisoned = _SequenceLost()
    sink = KafkaEventSink(poisoned, timeout=5)  # type: ignore[arg-type]
    for name in "ab":
        assert isinstance(await _send(sink, [_record(1, name)]), Unavailable)
    assert sink.producer is poisoned and not poisoned.stopped
