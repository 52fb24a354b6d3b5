"""The id index of duplicate-free ingestion: hits within the window, misses, expiry from the
front, eviction of the oldest at the cap (counted), and topics turned on and off."""

from __future__ import annotations

import pytest

from ingress.dedup_index import EVICTED, IdIndex, Owner, identity

A, B = Owner("broker", "ns", "a"), Owner("broker", "ns", "b")
WINDOWS = {"ta": (A, 10.0), "tb": (B, 60.0)}


def _index(max_ids: int = 100) -> IdIndex:
    index = IdIndex(max_ids, clock=lambda: 0.0)
    index.set_windows(WINDOWS)
    return index


@pytest.mark.parametrize(
    ("stored", "asked", "now_ms", "hit"),
    [
        pytest.param([("ta", 1, 1_000)], ("ta", 1), 2_000, True, id="hit"),
        pytest.param([("ta", 1, 1_000)], ("ta", 2), 2_000, False, id="other-id"),
        pytest.param([("ta", 1, 1_000)], ("tb", 1), 2_000, False, id="other-topic"),
        pytest.param([("ta", 1, 1_000)], ("ta", 1), 11_000, True, id="window-edge"),
        pytest.param([("ta", 1, 1_000)], ("ta", 1), 11_001, False, id="past-window"),
        pytest.param([("tb", 1, 1_000)], ("tb", 1), 50_000, True, id="longer-window"),
        pytest.param([("ta", 1, 1_000), ("ta", 1, 9_000)], ("ta", 1), 15_000, True, id="newer-copy-kept"),
        pytest.param([("ta", 1, 9_000), ("ta", 1, 1_000)], ("ta", 1), 15_000, True, id="older-copy-ignored"),
        pytest.param([("tx", 1, 1_000)], ("tx", 1), 2_000, False, id="topic-not-indexed"),
    ],
)
def test_seen(stored: list[tuple[str, int, int]], asked: tuple[str, int], now_ms: int, hit: bool) -> None:
    index = _index()
    for topic, key, ts in stored:
        index.add(topic, key, ts)
    assert index.seen(*asked, now_ms=now_ms) is hit


def test_expiry_drops_old_ids_from_the_front() -> None:
    index = _index()
    for key, ts in enumerate([1_000, 2_000, 3_000, 4_000]):
        index.add("ta", key, ts)
    index.add("tb", 9, 1_000)
    assert index.expire(now_ms=12_500) == 2  # ta's window is 10 s: 1,000 and 2,000 go
    assert len(index) == 3
    assert not index.seen("ta", 0, now_ms=12_500) and index.seen("ta", 2, now_ms=12_500)
    assert index.seen("tb", 9, now_ms=12_500)


def test_the_oldest_ids_go_first_at_the_cap_and_are_counted() -> None:
    index = _index(max_ids=3)
    before = EVICTED.labels("broker", "ns", "b")._value.get()
    index.add("tb", 1, 1_000)
    index.add("ta", 2, 2_000)
    index.add("ta", 3, 3_000)
    index.add("tb", 4, 4_000)  # over the cap: the oldest (tb's 1) goes
    assert len(index) == 3
    assert not index.seen("tb", 1, now_ms=5_000)
    assert all(index.seen(t, k, now_ms=5_000) for t, k in [("ta", 2), ("ta", 3), ("tb", 4)])
    assert EVICTED.labels("broker", "ns", "b")._value.get() == before + 1
    index.add("tb", 5, 5_000)  # then ta's 2, the oldest front
    assert not index.seen("ta", 2, now_ms=5_000) and len(index) == 3


def test_topics_turned_off_drop_their_ids_and_new_ones_start_empty() -> None:
    index = _index()
    index.add("ta", 1, 1_000)
    index.add("tb", 2, 1_000)
    index.set_windows({"tb": (B, 5.0), "tc": (Owner("channel", "ns", "c"), 5.0)})
    assert len(index) == 1 and index.topics() == ["tb", "tc"]
    assert index.window_of("tb") == 5.0 and index.window_of("ta") is None
    assert not index.seen("tb", 2, now_ms=7_000)  # the shorter window applies at once


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(("/s", "1"), ("/s", "1"), True, id="same"),
        pytest.param(("/s", "1"), ("/t", "1"), False, id="other-source"),
        pytest.param(("/s", "1"), ("/s", "2"), False, id="other-id"),
        pytest.param(("/s1", ""), ("/s", "1"), False, id="no-concatenation"),
    ],
)
def test_identity(a: tuple[str, str], b: tuple[str, str], same: bool) -> None:
    assert (identity(*a) == identity(*b)) is same
