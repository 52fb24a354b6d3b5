"""How fresh the id index must be for a request (`ingress.dedup_follower.freshness`), and what
`TopicFollower.synced` hands the request for each answer: nothing (decide now), a round ahead of
need that nobody waits on, the round under way, or the next round; and how long before the bound
that round ahead of need starts (`lead`), following what rounds take."""

from __future__ import annotations

import asyncio

import pytest

from channel.settings import Settings
from ingress.dedup_follower import ROUND_DURATION, Freshness, TopicFollower, freshness, lead
from ingress.dedup_index import IdIndex, Owner

NEVER = float("-inf")


@pytest.mark.parametrize(
    ("arrived", "max_staleness", "fresh_as_of", "current_began", "expected"),
    # The lead is half the bound (0.05) unless the case says otherwise (`test_freshness_lead`).
    [
        pytest.param(10.0, 0.0, 10.0, NEVER, Freshness.NEXT, id="strict-never-fresh"),
        pytest.param(10.0, 0.0, 9.0, 9.5, Freshness.NEXT, id="strict-never-joins-a-round-under-way"),
        pytest.param(10.0, 0.1, NEVER, NEVER, Freshness.NEXT, id="no-round-yet"),
        pytest.param(10.0, 0.1, 9.97, NEVER, Freshness.FRESH, id="young"),
        pytest.param(10.0, 0.1, 9.93, NEVER, Freshness.FRESH_REFRESH, id="over-half-as-old-refresh"),
        pytest.param(10.0, 0.1, 9.9, NEVER, Freshness.FRESH_REFRESH, id="exactly-the-bound"),
        pytest.param(10.0, 0.1, 9.85, NEVER, Freshness.NEXT, id="stale"),
        pytest.param(10.0, 0.1, 9.85, 9.95, Freshness.CURRENT, id="stale-round-under-way-began-late-enough"),
        pytest.param(10.0, 0.1, 9.5, 9.8, Freshness.NEXT, id="stale-round-under-way-too-old"),
        pytest.param(10.0, 0.1, 9.0, 10.02, Freshness.CURRENT, id="round-began-after-arrival"),
    ],
)
def test_freshness(
    arrived: float, max_staleness: float, fresh_as_of: float, current_began: float, expected: Freshness
) -> None:
    assert freshness(arrived, max_staleness, fresh_as_of, current_began, max_staleness / 2) is expected


@pytest.mark.parametrize(
    ("age", "lead_", "expected"),
    [
        pytest.param(0.07, 0.05, Freshness.FRESH_REFRESH, id="past-the-lead-refresh"),
        pytest.param(0.07, 0.02, Freshness.FRESH, id="a-short-lead-refreshes-later"),
        pytest.param(0.085, 0.02, Freshness.FRESH_REFRESH, id="short-lead-past-it"),
        pytest.param(0.1, 0.0, Freshness.FRESH, id="no-lead-fresh-to-the-bound"),
        pytest.param(0.11, 0.02, Freshness.NEXT, id="the-lead-never-stretches-the-bound"),
    ],
)
def test_freshness_lead(age: float, lead_: float, expected: Freshness) -> None:
    assert freshness(10.0, 0.1, 10.0 - age, NEVER, lead_) is expected


@pytest.mark.parametrize(
    ("max_staleness", "round_time", "expected"),
    [
        pytest.param(0.25, 0.007, 0.028, id="four-rounds"),
        pytest.param(0.25, 0.001, 0.02, id="at-least-the-minimum"),
        pytest.param(0.25, 0.5, 0.125, id="at-most-half-the-bound"),
        pytest.param(0.02, 0.001, 0.01, id="half-a-tiny-bound-under-the-minimum"),
    ],
)
def test_lead(max_staleness: float, round_time: float, expected: float) -> None:
    assert lead(max_staleness, round_time) == pytest.approx(expected)


def test_the_lead_follows_the_rounds_moving_average() -> None:
    follower = _follower(0.25)
    assert follower._lead == pytest.approx(0.125)  # untimed: half the bound
    observed = ROUND_DURATION._sum.get()
    follower._timed(0.01)
    assert ROUND_DURATION._sum.get() == pytest.approx(observed + 0.01)  # and the round is observed
    assert follower._lead == pytest.approx(0.04)  # the first round is the average
    for _ in range(50):
        follower._timed(0.001)
    assert follower._lead == pytest.approx(0.02)  # fast rounds: the minimum
    follower._timed(2.0)  # one slow round (a pause, Kafka slow) moves it a fifth of the way
    assert follower._lead == pytest.approx(0.125)  # capped at half the bound
    for _ in range(20):
        follower._timed(0.005)
    assert follower._lead == pytest.approx(lead(0.25, follower._round_time or 0.0))
    assert follower._lead < 0.125


def _follower(max_staleness: float) -> TopicFollower:
    follower = TopicFollower(Settings(), IdIndex(10), timeout=1.0, max_staleness=max_staleness)
    follower.set_windows({"t": (Owner("broker", "ns", "b"), 60.0)})
    return follower


async def test_synced_hands_out_nothing_the_round_under_way_or_the_next() -> None:
    loop = asyncio.get_running_loop()
    follower = _follower(0.1)
    now = loop.time()
    first = follower.synced(now)  # no round has completed: the next one
    assert first is not None and follower.synced(now) is first  # shared
    # The round begins and completes, as TopicFollower._rounds does.
    follower._fresh_as_of = now
    follower._next = None
    assert follower.synced(now + 0.04) is None  # young: decided at once, no round
    assert follower._next is None
    assert follower.synced(now + 0.07) is None  # over half as old: decided at once...
    ahead = follower._next
    assert ahead is not None  # ...and a round started ahead of need
    assert follower.synced(now + 0.08) is None and follower._next is ahead  # only one
    # That round is under way; a request for which the index is stale joins it if it began
    # late enough.
    follower._next, follower._current, follower._current_began = None, ahead, now + 0.07
    assert follower.synced(now + 0.15) is ahead
    stale = follower.synced(now + 0.2)
    assert stale is not None and stale is not ahead  # began too early for this one: the next


async def test_a_topic_newly_deduplicated_needs_a_round_whatever_the_last_one() -> None:
    follower = _follower(0.1)
    now = asyncio.get_running_loop().time()
    follower._fresh_as_of = now
    assert follower.synced(now) is None
    follower.set_windows({"t": (Owner("broker", "ns", "b"), 60.0), "u": (Owner("broker", "ns", "c"), 60.0)})
    assert follower.synced(now) is not None


async def test_strict_always_waits_for_a_round_that_begins_after_arrival() -> None:
    follower = _follower(0.0)
    now = asyncio.get_running_loop().time()
    follower._fresh_as_of = now + 1.0  # even a round that completed after arrival...
    follower._current, follower._current_began = asyncio.get_running_loop().create_future(), now + 0.5
    waited = follower.synced(now)
    assert waited is not None and waited is not follower._current  # ...or one under way: the next


def test_fresh_until_is_where_a_request_stops_being_fresh() -> None:
    """`ingress.dedup` decides a request at once, without asking `synced`, while it arrives no
    later than `fresh_until`: exactly where `freshness` stops answering FRESH."""
    follower = _follower(0.25)
    follower._freshened(100.0)
    follower._timed(0.01)  # the lead is now 0.04
    assert follower.fresh_until == pytest.approx(100.21)
    for arrived in (100.0, 100.2, follower.fresh_until, follower.fresh_until + 1e-6, 100.25, 100.3):
        fresh = freshness(arrived, 0.25, 100.0, NEVER, follower._lead) is Freshness.FRESH
        assert (arrived <= follower.fresh_until) is fresh
    follower.set_windows({"u": (Owner("broker", "ns", "c"), 60.0)})  # a new topic: no round has read it
    assert follower.fresh_until == float("-inf")
    strict = _follower(0.0)
    strict._freshened(100.0)
    assert strict.fresh_until == float("-inf")  # strict: never decided without a round
