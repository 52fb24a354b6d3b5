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
from aiokafka.errors import KafkaError, NotLeaderForPartitionError
from aiokafka.partitioner import DefaultPartitioner

from channel.errors import Unavailable
from channel.events import KafkaRecord
from channel.producer import KafkaEventSink

PARTITIONS = [0, 1]


class _Producer:
    """Takes batches as aiokafka's producer does; acknowledges each at once, except on the
    partitions named in `refuse` (the batch's future fails) and `not_taken` (send_batch raises:
    the batch is never handed over)."""

    def __init__(self, refuse: set[int] = frozenset(), not_taken: set[int] = frozenset()) -> None:
        # Never started, so never connects: only its batch builder is used.
        self._real = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", enable_idempotence=False)
        self.refuse = refuse
        self.not_taken = not_taken
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


def _record(partition: int, name: str) -> KafkaRecord:
    return KafkaRecord(_key_for(partition), name.encode(), [])


async def _outcomes(
    producer: _Producer, sends: dict[str, list[KafkaRecord]]
) -> dict[str, Unavailable | None]:
    """Every send submitted in one loop turn (so in one flush), and what each caller got."""
    sink = KafkaEventSink(producer, timeout=5)  # type: ignore[arg-type]  # a stand-in, see above
    got: dict[str, Unavailable | None] = {}
    answered = asyncio.Event()

    def done(name: str, error: Unavailable | None) -> None:
        got[name] = error
        if len(got) == len(sends):
            answered.set()

    for name, records in sends.items():
        sink.submit("topic", records, lambda error, name=name: done(name, error))
    async with asyncio.timeout(5):
        await answered.wait()
    assert sink.failing is any(error is not None for error in got.values())
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
