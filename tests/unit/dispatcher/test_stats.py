"""Delivery statistics: read from the dispatcher's counters, which records to write and when, and
their sum over replicas as `kanal describe` shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.registry import CollectorRegistry

from channel.metrics import LocalCounter
from dispatcher.stats import (
    HEARTBEAT_MS,
    LastError,
    Statistics,
    StatsTracker,
    Totals,
    aggregate,
    decode,
    totals_from_metrics,
)

LABELS = ["namespace", "kind", "parent", "trigger"]
SERIES = ("ns", "trigger", "default", "hello")


def _counters() -> tuple[LocalCounter, LocalCounter]:
    registry = CollectorRegistry()
    events = LocalCounter("events", "", [*LABELS, "outcome"], registry=registry)
    attempts = LocalCounter("attempts", "", [*LABELS, "destination", "code"], registry=registry)
    return events, attempts


def test_totals_come_from_the_counters() -> None:
    events, attempts = _counters()
    events.labels(*SERIES, "delivered").inc(5)
    events.labels(*SERIES, "dead_lettered").inc(2)
    events.labels(*SERIES, "filtered").inc(7)
    attempts.labels(*SERIES, "subscriber", "202").inc(5)
    attempts.labels(*SERIES, "subscriber", "500").inc(4)
    attempts.labels(*SERIES, "subscriber", "none").inc(2)
    attempts.labels(*SERIES, "dead_letter", "500").inc(9)  # not the subscriber's: not counted
    [(series, totals)] = totals_from_metrics(events.collect(), attempts.collect()).items()
    assert series == SERIES
    assert totals == Totals(
        delivered=5, dead_lettered=2, filtered=7, attempts=11, failures={"500": 4, "none": 2}
    )
    assert totals.retried == 11 - (5 + 2)


@pytest.mark.parametrize(
    ("totals", "retried"),
    [
        (Totals(), 0),
        (Totals(delivered=3, attempts=3), 0),
        (Totals(delivered=1, attempts=2), 1),
        (Totals(dead_lettered=1, attempts=3), 2),
        (Totals(dropped=2, attempts=0), 0),  # never below zero
    ],
    ids=["none", "first-time", "one-retry", "exhausted", "dropped-unattempted"],
)
def test_retried_is_attempts_beyond_each_events_first(totals: Totals, retried: int) -> None:
    assert totals.retried == retried


def test_tracker_writes_changes_and_heartbeats_only() -> None:
    tracker = StatsTracker("pod-1", started_ms=1_000)
    first = tracker.update({SERIES: Totals(delivered=1, attempts=1)}, now_ms=2_000)
    assert [key for key, _ in first] == ["trigger/ns/hello/pod-1"]
    assert first[0][1]["delivered"] == 1 and first[0][1]["lastError"] is None
    assert tracker.update({SERIES: Totals(delivered=1, attempts=1)}, now_ms=7_000) == []
    again = tracker.update({SERIES: Totals(delivered=1, attempts=1)}, now_ms=2_000 + HEARTBEAT_MS)
    assert len(again) == 1  # unchanged, but written again so retention keeps it


def test_tracker_notes_the_last_error_when_a_failure_count_grows() -> None:
    tracker = StatsTracker("pod-1", started_ms=0)
    tracker.update({SERIES: Totals(attempts=1, delivered=1)}, now_ms=1_000)
    [(_, value)] = tracker.update(
        {SERIES: Totals(attempts=3, delivered=1, failures={"503": 2})}, now_ms=5_000
    )
    assert value["lastError"] == {"status": "503", "time": 5_000}
    [(_, value)] = tracker.update(
        {SERIES: Totals(attempts=4, delivered=1, failures={"503": 2, "none": 1})}, now_ms=9_000
    )
    assert value["lastError"] == {"status": "none", "time": 9_000}
    [(_, value)] = tracker.update(
        {SERIES: Totals(attempts=5, delivered=2, failures={"503": 2, "none": 1})}, now_ms=13_000
    )
    assert value["lastError"] == {"status": "none", "time": 9_000}  # a success is no error


def _record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "started": 100,
        "updated": 200,
        "delivered": 0,
        "retried": 0,
        "deadLettered": 0,
        "dropped": 0,
        "filtered": 0,
        "lastError": None,
    }
    return {**base, **fields}


def test_aggregate_sums_replicas_and_keeps_the_latest_error() -> None:
    stats = aggregate(
        {
            "trigger/ns/hello/a": _record(delivered=3, retried=1, lastError={"status": "500", "time": 150}),
            "trigger/ns/hello/b": _record(
                started=50, updated=300, delivered=4, deadLettered=2, lastError={"status": "404", "time": 180}
            ),
            "trigger/ns/hello/c": None,  # a tombstone
        }
    )
    assert stats == Statistics(
        delivered=7,
        retried=1,
        dead_lettered=2,
        replicas=2,
        since_ms=50,
        updated_ms=300,
        last_error=LastError("404", 180),
    )


@pytest.mark.parametrize(
    "value",
    [
        _record(delivered=-1),
        _record(delivered="3"),
        _record(started=None),
        {"kind": "trigger"},
    ],
    ids=["negative", "string-count", "no-start", "no-counts"],
)
def test_aggregate_leaves_out_records_that_are_not_well_formed(value: dict[str, Any]) -> None:
    assert aggregate({"trigger/ns/x/a": value, "trigger/ns/x/b": _record(delivered=1)}).delivered == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        (b"not json", None),
        (b"[1, 2]", None),
        (json.dumps({"a": "x" * 5000}).encode(), None),
        (b'{"delivered": 1}', {"delivered": 1}),
    ],
    ids=["tombstone", "not-json", "not-object", "too-large", "record"],
)
def test_decode(raw: bytes | None, expected: dict[str, Any] | None) -> None:
    assert decode(raw) == expected
