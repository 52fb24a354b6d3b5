"""PingSource schedules: cron expressions in a time zone, and the ticks they give. Pure.

Knative's schedule is a five-field cron expression (minute hour day-of-month month day-of-week,
or a macro such as ``@hourly``), read in ``spec.timezone`` (an IANA name, UTC by default), so a
daily 09:00 ping stays at 09:00 local time across daylight-saving changes. Kanal also accepts a
six-field expression whose first field is seconds (``*/10 * * * * *``), an extension for
sub-minute pings; Knative rejects it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

__all__ = ["Schedule", "ScheduleError"]


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says why."""


class Schedule:
    """A compiled schedule: `ticks_between` lists the tick times in an interval."""

    __slots__ = ("_seconds", "expression", "zone")

    def __init__(self, expression: str, timezone: str | None = None) -> None:
        self.expression = expression.strip()
        try:
            self.zone = ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"unknown time zone {timezone!r} (an IANA name such as Europe/Paris)"
            ) from None
        fields = self.expression.split()
        if self.expression.startswith("@") or len(fields) == 5:
            self._seconds = False
        elif len(fields) == 6:
            self._seconds = True
        else:
            raise ScheduleError(
                f"{self.expression!r} has {len(fields)} fields; a schedule has 5 "
                "(minute hour day month weekday) or 6 (seconds first)"
            )
        try:
            croniter(self.expression, datetime.now(self.zone), second_at_beginning=self._seconds)
        except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
            raise ScheduleError(f"{self.expression!r} is not a valid cron schedule: {exc}") from None

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (an aware datetime), in UTC."""
        it = croniter(self.expression, moment.astimezone(self.zone), second_at_beginning=self._seconds)
        tick: datetime = it.get_next(datetime)
        return tick.astimezone(UTC)

    def ticks_between(self, after: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
        """Ticks t with after < t <= until, oldest first, at most `limit` (the newest ones)."""
        out: list[datetime] = []
        it = croniter(self.expression, after.astimezone(self.zone), second_at_beginning=self._seconds)
        while True:
            tick: datetime = it.get_next(datetime)
            if tick > until:
                break
            out.append(tick.astimezone(UTC))
            if len(out) > limit:
                out.pop(0)
        return out
