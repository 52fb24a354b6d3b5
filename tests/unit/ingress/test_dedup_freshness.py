"""How fresh the id index must be for a request (`ingress.dedup_follower.freshness`), and what
`TopicFollower.synced` hands the request for each answer: nothing (decide now), a round ahead of
need that nobody waits on, the round under way, or the next round."""

from __future__ import annotations

import asyncio

import pytest

from channel.settings import Settings
from ingress.dedup_follower import Freshness, TopicFollower, freshness
from ingress.dedup_index import IdIndex, Owner

NEVER = float("-inf")


@pytest.mark.parametrize(
    ("arrived", "max_staleness", "fresh_as_of", "current_began", "expected"),
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
    assert freshness(arrived, max_staleness, fresh_as_of, current_began) is expected


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
