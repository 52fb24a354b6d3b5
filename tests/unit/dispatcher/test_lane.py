"""The decisions on a lane's state, by tables: which records the shared reader offers it, how long
it waits for a full lane, when a lane catching up rejoins, and which offset a lane commits."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from channel.settings import Settings
from dispatcher.lane import DETACH_AFTER, Lane, committable, detach_wait, may_rejoin, offered, sequence
from dispatcher.offsets import PartitionOffsets
from dispatcher.plan import Plan
from dispatcher.retry import RetryPolicy

TP = TopicPartition("knative-broker.ns.default", 0)


@pytest.mark.parametrize(
    ("start", "offset", "expected"),
    [
        pytest.param(None, 5, False, id="not-attached"),
        pytest.param(10, 9, False, id="before-its-start"),
        pytest.param(10, 10, True, id="at-its-start"),
        pytest.param(10, 11, True, id="after-its-start"),
        pytest.param(0, 0, True, id="from-the-beginning"),
    ],
)
def test_offered(start: int | None, offset: int, expected: bool) -> None:
    assert offered(start, offset) is expected


@pytest.mark.parametrize(
    ("now", "window", "waited", "alone", "expected"),
    [
        pytest.param(5.0, 4.5, 0.05, True, (4.5, 0.05, None), id="alone-unbounded"),
        pytest.param(5.0, 4.5, 0.05, False, (4.5, 0.05, DETACH_AFTER - 0.05), id="rest-of-budget"),
        pytest.param(5.0, 4.5, 0.3, False, (4.5, 0.3, 0.0), id="budget-spent"),
        pytest.param(5.0, 3.9, 0.3, False, (5.0, 0.0, DETACH_AFTER), id="new-window"),
        pytest.param(5.0, 4.0, 0.3, False, (4.0, 0.3, 0.0), id="window-one-second-old-still-counts"),
        pytest.param(5.0, 0.0, 0.0, False, (5.0, 0.0, DETACH_AFTER), id="first-wait"),
    ],
)
def test_detach_wait(
    now: float, window: float, waited: float, alone: bool, expected: tuple[float, float, float | None]
) -> None:
    got = detach_wait(now, window, waited, alone)
    assert got[:2] == expected[:2]
    if expected[2] is None:
        assert got[2] is None
    else:
        assert got[2] == pytest.approx(expected[2])


@pytest.mark.parametrize(
    ("offset", "position", "pending", "buffer", "assigned", "expected"),
    [
        pytest.param(100, 100, 0, 1024, True, True, id="next-not-handed-out"),
        pytest.param(120, 100, 0, 1024, True, True, id="ahead-of-shared"),
        pytest.param(99, 100, 0, 1024, True, False, id="shared-handed-it-out"),
        pytest.param(100, 100, 513, 1024, True, False, id="over-half-full"),
        pytest.param(100, 100, 512, 1024, True, True, id="half-full"),
        pytest.param(100, 100, 0, 1024, False, False, id="revoked"),
        pytest.param(0, 0, 0, 1, True, True, id="empty-partition"),
    ],
)
def test_may_rejoin(
    offset: int, position: int, pending: int, buffer: int, assigned: bool, expected: bool
) -> None:
    assert may_rejoin(offset, position, pending, buffer, assigned) is expected


@pytest.mark.parametrize(
    ("holds", "lowest", "start", "position", "catching", "expected"),
    [
        pytest.param(True, 5, 0, 10, None, None, id="floor-holds"),
        pytest.param(False, 5, 0, 10, None, 5, id="lowest-in-flight"),
        pytest.param(False, None, 3, 10, None, 10, id="attached-at-shared-position"),
        pytest.param(False, None, 12, 10, None, 12, id="never-before-its-start"),
        pytest.param(False, None, 12, None, None, 12, id="shared-not-read-yet"),
        pytest.param(False, None, None, 10, 7, 7, id="catching-up"),
        pytest.param(False, 4, None, 10, 7, 4, id="catching-up-with-one-in-flight"),
        pytest.param(False, None, None, 10, None, None, id="not-begun"),
    ],
)
def test_committable(
    holds: bool,
    lowest: int | None,
    start: int | None,
    position: int | None,
    catching: int | None,
    expected: int | None,
) -> None:
    assert (
        committable(holds=holds, lowest=lowest, start=start, position=position, catching=catching) == expected
    )


def _lane() -> Lane:
    plan = Plan(
        kind="trigger",
        key="Trigger/ns/t",
        namespace="ns",
        name="t",
        group="g",
        topic=TP.topic,
        created_ms=0,
        subscriber="http://127.0.0.1:1/",
        reply_to=None,
        reply_topic=None,
        dead_letter=None,
        retry=RetryPolicy(),
    )
    return Lane(plan, Settings(dispatcher_lane_buffer=4))


def test_a_lane_commits_from_its_own_state() -> None:
    lane = _lane()
    assert lane.committable(TP, 50) is None
    lane.start[TP] = 40
    assert lane.committable(TP, 50) == 50
    lane.offsets[TP] = parts = PartitionOffsets()
    parts.begin(44)
    parts.begin(45)
    parts.done(45)
    assert lane.committable(TP, 50) == 44
    lane.floor.set(TP, 1_000)
    assert lane.committable(TP, 50) is None
    lane.forget(TP)
    assert lane.committable(TP, 50) is None


def test_a_lane_is_full_at_its_buffer() -> None:
    lane = _lane()
    lane.pending = 3
    assert not lane.full()
    lane.pending = 4
    assert lane.full()


P1 = TopicPartition(TP.topic, 1)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param((TP, b"order-1"), (TP, b"order-1"), True, id="same-key-same-partition"),
        pytest.param((TP, b"order-1"), (TP, b"order-2"), False, id="other-key-goes-on"),
        pytest.param((TP, None), (TP, None), True, id="keyless-one-sequence-per-partition"),
        pytest.param((TP, None), (TP, b"order-1"), False, id="keyless-apart-from-keyed"),
        pytest.param((TP, b"order-1"), (P1, b"order-1"), False, id="partitions-apart"),
        pytest.param((TP, b""), (TP, None), False, id="empty-key-is-a-key"),
    ],
)
def test_ordered_sequences(
    a: tuple[TopicPartition, bytes | None], b: tuple[TopicPartition, bytes | None], same: bool
) -> None:
    assert (sequence(*a) == sequence(*b)) is same
