"""A PingSource's events: which ticks are due, and the CloudEvent of each. Pure.

Event id: a UUID derived from the source's uid and the tick's time, so whichever controller sends
a tick, and however often, the event has the same id, and a sink can drop a repeat (CloudEvents
identify an event by source and id). `time` is the tick's scheduled time, not the moment of the
send.

Due ticks: every tick after the last one handled (or after the source's creation) up to now.
Ticks missed while no controller ran are sent late, with their scheduled `time`, when they are at
most `catch_up` seconds old (`KANAL_PING_CATCH_UP`); older ones are skipped (Knative sends none
of them) and count as handled, so they are reported once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from channel.events import CloudEvent
from channel.resources.model import PingSource
from channel.sources.schedule import Schedule

__all__ = ["PING_TYPE", "Due", "due_ticks", "format_time", "parse_time", "ping_event", "ping_source"]

PING_TYPE = "dev.knative.sources.ping"
_COUNT_LIMIT = 10_000  # skipped ticks counted one by one up to this many


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, fractional seconds only when there are some."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{moment.microsecond:06d}Z" if moment.microsecond else "Z"
    )


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time as an aware datetime (UTC when no offset is given), or None."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ping_source(namespace: str, name: str) -> str:
    """The `source` attribute of a PingSource's events, as Knative writes it."""
    return f"/apis/v1/namespaces/{namespace}/pingsources/{name}"


def ping_event(source: PingSource, tick: datetime) -> CloudEvent:
    """The event of one tick: id from the source's uid and the tick, `time` the tick."""
    meta = source.metadata
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kanal:pingsource:{meta.uid}:{format_time(tick)}")),
        "source": ping_source(meta.namespace, meta.name),
        "type": PING_TYPE,
        "time": format_time(tick),
    }
    spec = source.spec
    if spec.content_type:
        attributes["datacontenttype"] = spec.content_type
    if spec.ce_overrides is not None:
        for name, value in spec.ce_overrides.extensions.items():
            attributes.setdefault(name, value)
    return CloudEvent(attributes, spec.payload())


@dataclass(frozen=True, slots=True)
class Due:
    """What to do for one source now: `send` these ticks (oldest first); `skipped` ticks were too
    old (at least that many, when `skipped` reached the counting limit), the newest of them
    `skipped_until`, which counts as handled."""

    send: list[datetime]
    skipped: int = 0
    skipped_until: datetime | None = None


def due_ticks(
    schedule: Schedule, last: datetime | None, created: datetime, now: datetime, catch_up: float
) -> Due:
    """The ticks due at `now` after `last` (the last tick handled; None: none yet, start after
    `created`), sending late only those at most `catch_up` seconds old."""
    after = last if last is not None else created
    oldest = now - timedelta(seconds=catch_up)
    skipped, skipped_until = 0, None
    if after < oldest:
        skipped, skipped_until = schedule.count_before(after, oldest, _COUNT_LIMIT)
    start = max(after, skipped_until) if skipped_until is not None else after
    return Due(schedule.ticks_between(start, now, limit=_COUNT_LIMIT), skipped, skipped_until)
