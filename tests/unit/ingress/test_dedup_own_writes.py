"""The follower's view of its own writes: a round need not read back what this process wrote
(`TopicFollower._covered`), and every partition is within its window."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from channel.settings import Settings
from ingress.dedup_follower import TopicFollower
from ingress.dedup_index import IdIndex

TP = TopicPartition("t", 0)


@pytest.mark.parametrize(
    ("position", "own", "end", "covered"),
    [
        pytest.param(10, [], 10, True, id="read-to-the-end"),
        pytest.param(10, [], 12, False, id="behind-nothing-own"),
        pytest.param(10, [(10, 12)], 12, True, id="own-write-next"),
        pytest.param(10, [(10, 12), (12, 20)], 15, True, id="own-writes-contiguous"),
        pytest.param(10, [(11, 12)], 12, False, id="another-writer-first"),
        pytest.param(10, [(10, 12), (13, 20)], 15, False, id="another-writer-between"),
        pytest.param(10, [(5, 8), (10, 11)], 11, True, id="old-ranges-pruned"),
        pytest.param(10, [(8, 14)], 12, True, id="range-read-in-part"),
    ],
)
def test_a_round_waits_only_for_other_writers(
    position: int, own: list[tuple[int, int]], end: int, covered: bool
) -> None:
    follower = TopicFollower(Settings(), IdIndex(10), timeout=1.0)
    follower._positions[TP] = position
    for first, last in own:
        follower.written(TP.topic, TP.partition, first, last - first)
    assert follower._covered(TP, end) is covered


def test_writes_to_topics_not_followed_are_not_kept() -> None:
    follower = TopicFollower(Settings(), IdIndex(10), timeout=1.0)
    follower.written("other", 0, 0, 5)
    assert follower._own == {}


class _Consumer:
    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass


TP1 = TopicPartition("t", 1)


@pytest.mark.parametrize(
    ("positions", "targets", "own", "fetched"),
    [
        pytest.param({TP: 10, TP1: 5}, {}, [], [], id="nothing-asked"),
        pytest.param({TP: 10, TP1: 5}, {TP: 12}, [], [TP], id="one-behind"),
        pytest.param({TP: 10, TP1: 5}, {TP: 10, TP1: 9}, [], [TP1], id="one-reached"),
        pytest.param({TP: 10, TP1: 5}, {TP: 12}, [(10, 12)], [], id="own-writes-skipped"),
        pytest.param({TP: 10, TP1: 5}, {TP: 14}, [(10, 12)], [TP], id="another-writer-after-own"),
    ],
)
def test_only_partitions_a_round_needs_are_fetched(
    positions: dict[TopicPartition, int],
    targets: dict[TopicPartition, int],
    own: list[tuple[int, int]],
    fetched: list[TopicPartition],
) -> None:
    follower = TopicFollower(Settings(), IdIndex(10), timeout=1.0)
    consumer = _Consumer()
    follower._positions.update(positions)
    follower._targets.update(targets)
    follower._fetching = set(positions)  # as assign() leaves them
    for first, last in own:
        follower.written(TP.topic, TP.partition, first, last - first)
    follower._skip_own(consumer)
    assert follower._active(consumer) == fetched
    assert consumer.paused == set(positions) - set(fetched)


def test_a_round_moves_a_single_writer_past_its_own_writes() -> None:
    """With no other writer the follower never fetches, so each round must move it past what this
    process wrote: else the ranges would pile up to their cap and be read back from Kafka."""
    follower = TopicFollower(Settings(), IdIndex(10), timeout=1.0)
    follower._positions[TP] = 0
    for first in range(0, 1000, 10):
        follower.written(TP.topic, TP.partition, first, 10)
    assert follower._covered(TP, 1000)
    assert follower._positions[TP] == 1000 and not follower._own[TP]
    follower.written(TP.topic, TP.partition, 1001, 5)  # another writer's record at 1000
    assert not follower._covered(TP, 1006)
    assert follower._positions[TP] == 1000 and len(follower._own[TP]) == 1
