"""Deciding which events of a deduplicating topic are stored: duplicates answered without a
write, concurrent copies coalesced on the first (which a failure hands on), batches decided
event by event, what the follower's round finds (another replica's write), and a round that
fails."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from channel.errors import KanalError, Unavailable
from channel.events import CloudEvent, KafkaRecord, to_kafka_record
from ingress.dedup import Deduplicator, event_key
from ingress.dedup_index import IdIndex, Owner
from support.memory_sink import MemoryEventSink

TOPIC = "t"


class _Follower:
    """Rounds the test finishes: each `synced()` before `finish` shares one future."""

    def __init__(self, index: IdIndex) -> None:
        self.index = index
        self.round: asyncio.Future[None] | None = None
        self.rounds = 0
        self.elsewhere: list[CloudEvent] = []  # stored by another replica, found by the next round
        self.fresh = False  # the index fresh enough already: no round asked for

    @property
    def fresh_until(self) -> float:
        return float("inf") if self.fresh else float("-inf")

    def synced(self, arrived: float) -> asyncio.Future[None] | None:
        if self.fresh:
            return None
        if self.round is None:
            self.round = asyncio.get_running_loop().create_future()
            self.rounds += 1
        return self.round

    def finish(self, error: KanalError | None = None) -> None:
        assert self.round is not None
        for event in self.elsewhere:
            self.index.add(TOPIC, event_key(event), 0)
        if self.elsewhere:
            self.index.reads += 1  # as the follower marks what it read
        round_, self.round = self.round, None
        if error is None:
            round_.set_result(None)
        else:
            round_.set_exception(error)


def _event(event_id: str, source: str = "/s") -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": event_id, "source": source, "type": "t"})


class _Setup:
    def __init__(self) -> None:
        self.index = IdIndex(100, clock=lambda: 0.0)
        self.index.set_windows({TOPIC: (Owner("broker", "ns", "b"), 60.0)})
        self.follower = _Follower(self.index)
        self.sink = MemoryEventSink()
        self.dedup = Deduplicator(self.index, self.follower, self.sink, timeout=5.0, clock=lambda: 0.0)

    def send(self, *events: CloudEvent) -> asyncio.Future[tuple[KanalError | None, list[int]]]:
        answer: asyncio.Future[tuple[KanalError | None, list[int]]] = (
            asyncio.get_running_loop().create_future()
        )

        def done(error: KanalError | None, stored: Sequence[CloudEvent] | None = None) -> None:
            if stored is None:  # every event stored, or none if it failed
                indices = [] if error is not None else list(range(len(events)))
            else:
                indices = [i for i, event in enumerate(events) if any(event is s for s in stored)]
            answer.set_result((error, indices))

        self.dedup.submit(TOPIC, events, [to_kafka_record(e) for e in events], done)
        return answer

    def stored_ids(self) -> list[str]:
        return [dict(r.headers)["ce_id"].decode() for r in self.sink.topics.get(TOPIC, [])]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_new_event_is_stored_after_a_round_and_its_copy_is_not() -> None:
    s = _Setup()
    first = s.send(_event("1"))
    await _settle()
    assert not first.done() and s.stored_ids() == []  # waits for the round
    s.follower.finish()
    assert await first == (None, [0])
    assert await s.send(_event("1")) == (None, [])  # answered from the index, no round
    assert s.follower.rounds == 1 and s.stored_ids() == ["1"]


@pytest.mark.parametrize(
    ("second", "stored"),
    [
        pytest.param(_event("1", "/other"), ["1", "1"], id="other-source-same-id"),
        pytest.param(_event("2"), ["1", "2"], id="other-id"),
    ],
)
async def test_only_source_and_id_together_are_the_identity(second: CloudEvent, stored: list[str]) -> None:
    s = _Setup()
    first = s.send(_event("1"))
    await _settle()
    s.follower.finish()
    await first
    later = s.send(second)
    await _settle()
    s.follower.finish()
    assert await later == (None, [0])
    assert s.stored_ids() == stored


async def test_concurrent_copies_wait_for_the_first_and_are_not_stored() -> None:
    s = _Setup()
    answers = [s.send(_event("1")) for _ in range(3)]
    await _settle()
    s.follower.finish()
    assert [await a for a in answers] == [(None, [0]), (None, []), (None, [])]
    assert s.stored_ids() == ["1"] and s.follower.rounds == 1


async def test_a_copy_tries_itself_when_the_first_fails() -> None:
    s = _Setup()
    s.sink.fail = Unavailable("down")
    first, second = s.send(_event("1")), s.send(_event("1"))
    await _settle()
    s.follower.finish()
    error, stored = await first
    assert isinstance(error, Unavailable) and stored == []
    s.sink.fail = None
    await _settle()
    s.follower.finish()  # the second's own round
    assert await second == (None, [0])
    assert s.stored_ids() == ["1"]


async def test_a_batch_stores_only_its_new_events() -> None:
    s = _Setup()
    first = s.send(_event("1"))
    await _settle()
    s.follower.finish()
    await first
    batch = s.send(_event("1"), _event("2"), _event("2"), _event("3"))
    await _settle()
    s.follower.finish()
    assert await batch == (None, [1, 3])
    assert s.stored_ids() == ["1", "2", "3"]


async def test_the_round_finds_what_another_replica_stored() -> None:
    s = _Setup()
    s.follower.elsewhere.append(_event("1"))
    answer = s.send(_event("1"), _event("2"))
    await _settle()
    s.follower.finish()
    assert await answer == (None, [1])
    assert s.stored_ids() == ["2"]


async def test_a_failed_round_is_unavailable_and_stores_nothing() -> None:
    s = _Setup()
    first, copy = s.send(_event("1")), s.send(_event("1"))
    await _settle()
    s.follower.finish(Unavailable("not caught up"))
    error, stored = await first
    assert isinstance(error, Unavailable) and stored == []
    await _settle()
    s.follower.finish()  # the copy was waiting on the first: it tries itself
    assert await copy == (None, [0])
    assert s.stored_ids() == ["1"]


async def test_a_topic_not_deduplicated_stores_everything() -> None:
    s = _Setup()
    s.index.set_windows({})
    answers = [s.send(_event("1")) for _ in range(2)]
    assert [await a for a in answers] == [(None, [0]), (None, [0])]
    assert s.stored_ids() == ["1", "1"] and s.follower.rounds == 0


# The same decisions with the index fresh enough (the default staleness bound under traffic):
# one event is stored without asking for a round (Deduplicator._store_new).


async def test_fresh_a_new_event_is_stored_at_once_and_its_copy_is_not() -> None:
    s = _Setup()
    s.follower.fresh = True
    assert await s.send(_event("1")) == (None, [0])
    assert await s.send(_event("1")) == (None, [])
    assert await s.send(_event("1", "/other")) == (None, [0])
    assert s.follower.rounds == 0 and s.stored_ids() == ["1", "1"]
    assert s.dedup._storing == {}  # every claim released


async def test_fresh_concurrent_copies_wait_for_the_first_and_are_not_stored() -> None:
    s = _Setup()
    s.follower.fresh = True
    answers = [s.send(_event("1")) for _ in range(3)]
    assert [await a for a in answers] == [(None, [0]), (None, []), (None, [])]
    assert s.stored_ids() == ["1"] and s.dedup._storing == {}


async def test_fresh_a_copy_tries_itself_when_the_first_fails() -> None:
    s = _Setup()
    s.follower.fresh = True
    s.sink.fail = Unavailable("down")
    submit = s.sink.submit

    def fail_once(topic: str, records: Sequence[KafkaRecord], done: Callable[..., None]) -> None:
        submit(topic, records, done)
        s.sink.fail = None  # Kafka takes the next write

    s.sink.submit = fail_once  # type: ignore[method-assign]
    first, second = s.send(_event("1")), s.send(_event("1"))
    error, stored = await first
    assert isinstance(error, Unavailable) and stored == []
    assert await second == (None, [0])  # its own write, once the first's failed
    assert s.stored_ids() == ["1"] and s.dedup._storing == {}


async def test_fresh_an_event_the_index_holds_outside_its_window_is_stored_again() -> None:
    s = _Setup()
    s.follower.fresh = True
    s.index.add(TOPIC, event_key(_event("1")), -120_000)  # two minutes before the clock's 0
    assert await s.send(_event("1")) == (None, [0])  # window 60 s: stored again
    assert s.stored_ids() == ["1"]
