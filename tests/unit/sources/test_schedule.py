"""Schedules in time zones: the ticks around daylight-saving changes, macros, seconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from channel.sources.schedule import Schedule, ScheduleError

PARIS = "Europe/Paris"
# Clocks go back at 03:00 CEST (01:00 UTC) on 25 October 2026, forward at 02:00 CET (01:00 UTC)
# on 29 March 2026.
AUTUMN = datetime(2026, 10, 24, 12, tzinfo=UTC)
SPRING = datetime(2026, 3, 28, 12, tzinfo=UTC)


def _utc(ticks: list[datetime]) -> list[str]:
    return [t.strftime("%d %H:%M") for t in ticks]


@pytest.mark.parametrize(
    ("expression", "start", "expected"),
    [
        # A fixed hour in the repeated hour fires once, at its first occurrence.
        ("30 2 * * *", AUTUMN, ["25 00:30", "26 01:30"]),
        # A fixed hour in the skipped hour fires when the clock jumps (03:00 CEST = 01:00 UTC).
        ("30 2 * * *", SPRING, ["29 01:00", "30 00:30"]),
        # A daily ping keeps its local time: 09:00 is 07:00 UTC in summer, 08:00 in winter.
        ("0 9 * * *", AUTUMN - timedelta(days=1), ["24 07:00", "25 08:00"]),
        ("0 9 * * *", SPRING - timedelta(days=1), ["28 08:00", "29 07:00"]),
    ],
    ids=["autumn-repeated-once", "spring-skipped-fires-at-jump", "autumn-local-time", "spring-local-time"],
)
def test_daily_ticks_across_dst(expression: str, start: datetime, expected: list[str]) -> None:
    schedule = Schedule(expression, PARIS)
    assert _utc(schedule.ticks_between(start, start + timedelta(days=2))) == expected


@pytest.mark.parametrize("start", [AUTUMN, SPRING], ids=["autumn", "spring"])
def test_hourly_ticks_stay_an_hour_apart_across_dst(start: datetime) -> None:
    schedule = Schedule("0 * * * *", PARIS)
    ticks = schedule.ticks_between(start, start + timedelta(days=1))
    assert len(ticks) == 24
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(ticks))


def test_ticks_are_utc_and_strictly_after_the_start() -> None:
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    schedule = Schedule("* * * * *", "America/New_York")
    ticks = schedule.ticks_between(start, start + timedelta(minutes=2))
    assert ticks == [start + timedelta(minutes=1), start + timedelta(minutes=2)]
    assert all(t.tzinfo == UTC for t in ticks)
    assert schedule.next_after(start) == start + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("@hourly", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC)),
        ("@daily", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)),
        (
            "*/15 * * * * *",
            datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
            datetime(2026, 1, 1, 0, 0, 15, tzinfo=UTC),
        ),
    ],
    ids=["hourly", "daily", "seconds-field"],
)
def test_macros_and_seconds(expression: str, after: datetime, expected: datetime) -> None:
    assert Schedule(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "timezone", "words"),
    [
        ("* * *", None, "fields"),
        ("* * * * * * *", None, "fields"),
        ("61 * * * *", None, "not a valid cron"),
        ("* * * * *", "Mars/Olympus", "time zone"),
        ("@sometimes", None, "unknown macro"),
    ],
    ids=["too-few", "too-many", "out-of-range", "bad-zone", "bad-macro"],
)
def test_bad_schedules(expression: str, timezone: str | None, words: str) -> None:
    with pytest.raises(ScheduleError, match=words):
        Schedule(expression, timezone)


def test_count_before_is_bounded_and_exact_about_the_newest() -> None:
    schedule = Schedule("*/10 * * * * *")
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert schedule.count_before(after, after + timedelta(seconds=35), 100) == (
        3,
        after + timedelta(seconds=30),
    )
    assert schedule.count_before(after, after + timedelta(days=1), 5) == (5, after + timedelta(seconds=86390))
    assert schedule.count_before(after, after + timedelta(seconds=10), 5) == (0, None)
