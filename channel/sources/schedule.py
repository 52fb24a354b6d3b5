"""PingSource schedules: cron expressions in a time zone, and the ticks they give. Pure.

Knative's schedule is a five-field cron expression (minute hour day-of-month month day-of-week,
or a macro such as ``@hourly``), read in ``spec.timezone`` (an IANA name, UTC by default), so a
daily 09:00 ping stays at 09:00 local time across daylight-saving changes. Kanal also accepts a
six-field expression whose first field is seconds (``*/10 * * * * *``), an extension for
sub-minute pings; Knative rejects it.

Daylight saving, decided here once: when clocks go back, a schedule with a fixed hour (``30 2 * *
*``) fires once, at the first of the two 02:30s, while a schedule whose hour field is ``*`` keeps
its pace through both copies of the repeated hour (an hourly ping is never two hours apart). When
clocks go forward, a tick whose local time does not exist fires when the clock jumps (02:30 on the
spring-forward night fires at 03:00), as classic cron does; it is not lost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

__all__ = ["Schedule", "ScheduleError"]

# Macros as five fields, to see whether their hour is fixed.
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says why."""


class Schedule:
    """A compiled schedule: the tick times (aware, in UTC) it gives in an interval."""

    __slots__ = ("_fixed_hour", "_seconds", "expression", "zone")

    def __init__(self, expression: str, timezone: str | None = None) -> None:
        self.expression = expression.strip()
        try:
            self.zone = ZoneInfo(timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"unknown time zone {timezone!r} (an IANA name such as Europe/Paris)"
            ) from None
        if self.expression.startswith("@") and self.expression.lower() not in _MACROS:
            raise ScheduleError(
                f"{self.expression!r} is not a valid cron schedule: unknown macro "
                f"(one of {', '.join(_MACROS)})"
            )
        fields = _MACROS.get(self.expression.lower(), self.expression).split()
        if len(fields) not in (5, 6):
            raise ScheduleError(
                f"{self.expression!r} has {len(fields)} fields; a schedule has 5 "
                "(minute hour day month weekday) or 6 (seconds first)"
            )
        self._seconds = len(fields) == 6
        self._fixed_hour = fields[2 if self._seconds else 1] != "*"
        try:
            croniter(self.expression, datetime.now(self.zone), second_at_beginning=self._seconds)
        except (CroniterBadCronError, CroniterBadDateError, ValueError, KeyError) as exc:
            raise ScheduleError(f"{self.expression!r} is not a valid cron schedule: {exc}") from None

    def _iterate(self, after: datetime) -> croniter:
        return croniter(self.expression, after.astimezone(self.zone), second_at_beginning=self._seconds)

    def _next(self, it: croniter) -> datetime:
        while True:
            tick: datetime = it.get_next(datetime)
            utc = tick.astimezone(UTC)
            # The second copy of a repeated local time: skipped by fixed-hour schedules.
            if not (self._fixed_hour and utc.astimezone(self.zone).fold):
                return utc

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (an aware datetime), in UTC."""
        return self._next(self._iterate(moment))

    def ticks_between(self, after: datetime, until: datetime, limit: int = 1000) -> list[datetime]:
        """Ticks t with after < t <= until, oldest first, at most `limit` (the newest ones)."""
        out: list[datetime] = []
        it = self._iterate(after)
        while (tick := self._next(it)) <= until:
            out.append(tick)
            if len(out) > limit:
                out.pop(0)
        return out

    def count_before(self, after: datetime, before: datetime, limit: int) -> tuple[int, datetime | None]:
        """How many ticks t have after < t < before (counting stops at `limit`), and the newest
        of them: the newest is found directly, so a long gap costs `limit` steps at most."""
        it = self._iterate(after)
        count = 0
        while count < limit and self._next(it) < before:
            count += 1
        if count == 0:
            return 0, None
        newest: datetime = self._iterate(before).get_prev(datetime)
        newest = newest.astimezone(UTC)
        while self._fixed_hour and newest.astimezone(self.zone).fold:
            newest = self._iterate(newest).get_prev(datetime).astimezone(UTC)
        return count, newest
