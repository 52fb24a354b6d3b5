"""Delivery statistics per Trigger and Subscription, published to Kafka for `kanal describe`.

Kafka is Kanal's only state, so the statistics live there too: each dispatcher process reads its
own Prometheus counters (`dispatcher.metrics`: events by final outcome, attempts by response
code) every `INTERVAL` seconds and writes one small JSON record per Trigger or Subscription whose
counts changed to the compacted topic `channel.kafka.STATS_TOPIC`, keyed by resource and replica
(`trigger/NAMESPACE/NAME/REPLICA`). No hook sits in the delivery path: the counters are already
kept there, and reading them costs one pass over their label sets per interval.

The decisions, and the bounds they give:

* Counts are those of one process since its start; `kanal describe` sums the latest record of
  each replica (`aggregate`). A replica's last counts are written when it stops, so a restart
  loses at most one interval of a crashed process.
* The topic is `compact,delete` with `RETENTION_MS` (7 days), and a live replica writes every
  record again at least every `HEARTBEAT_MS` (an hour) even when unchanged. So the topic holds at
  most one record per resource and replica that ran in the last week, and a deleted Trigger's
  or a gone replica's records age out. Prometheus stays the long-term record.
* "Retried" is attempts to the subscriber beyond each event's first: attempts minus the events
  that reached a final outcome (an event still being retried counts its attempts so far).
* The last error is the response code (or `none`, no response) of a failed attempt to the
  subscriber, and the time is when the publisher saw its counter grow: within one interval of
  the attempt.
* Publishing is best effort: where Kafka refuses the topic (an ACL) the dispatcher logs one line
  and delivers as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from aiokafka.errors import KafkaError
from prometheus_client.core import Metric

from channel.errors import KanalError
from channel.events import KafkaRecord
from channel.kafka import STATS_TOPIC, create_admin, ensure_topic
from channel.producer import EventSink
from channel.settings import Settings
from dispatcher import metrics

__all__ = [
    "HEARTBEAT_MS",
    "INTERVAL",
    "RETENTION_MS",
    "LastError",
    "Statistics",
    "StatsPublisher",
    "StatsTracker",
    "Totals",
    "aggregate",
    "stats_key",
    "totals_from_metrics",
]

log = logging.getLogger(__name__)

INTERVAL: Final = 5.0
HEARTBEAT_MS: Final = 3_600_000
RETENTION_MS: Final = 7 * 24 * 3_600_000
# What one record may hold when read back: a record larger than this is not Kanal's and is skipped.
MAX_RECORD_BYTES: Final = 4096

Series = tuple[str, str, str, str]
"""A plan's metric labels: namespace, kind (trigger or subscription), parent, name."""


def stats_key(kind: str, namespace: str, name: str, replica: str = "") -> str:
    """The record key of a resource's statistics (kind lower-case); without `replica`, the prefix
    every replica's key of that resource starts with."""
    return f"{kind.lower()}/{namespace}/{name}/{replica}"


@dataclass(frozen=True, slots=True)
class LastError:
    status: str  # an HTTP status, or "none" when no response came
    time_ms: int


@dataclass(frozen=True, slots=True)
class Totals:
    """One process's counts for one Trigger or Subscription."""

    delivered: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    filtered: int = 0
    attempts: int = 0  # to the subscriber
    failures: Mapping[str, int] = field(default_factory=dict)  # failed attempts by code

    @property
    def retried(self) -> int:
        return max(0, self.attempts - (self.delivered + self.dead_lettered + self.dropped))


def _failed(code: str) -> bool:
    return not (code.isdigit() and 200 <= int(code) < 300)


def totals_from_metrics(events: Iterable[Metric], attempts: Iterable[Metric]) -> dict[Series, Totals]:
    """Per plan, the totals in the collected `kanal_dispatcher_events` and `..._attempts`."""
    found: dict[Series, dict[str, Any]] = {}

    def entry(labels: Mapping[str, str]) -> dict[str, Any]:
        series = (labels["namespace"], labels["kind"], labels["parent"], labels["trigger"])
        return found.setdefault(series, {"failures": {}})

    for family in events:
        for sample in family.samples:
            if sample.name.endswith("_total"):
                outcome = sample.labels["outcome"]
                if outcome in ("delivered", "dead_lettered", "dropped", "filtered"):
                    counts = entry(sample.labels)
                    counts[outcome] = counts.get(outcome, 0) + int(sample.value)
    for family in attempts:
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels["destination"] == "subscriber":
                counts = entry(sample.labels)
                counts["attempts"] = counts.get("attempts", 0) + int(sample.value)
                code = sample.labels["code"]
                if _failed(code):
                    counts["failures"][code] = int(sample.value)
    return {series: Totals(**counts) for series, counts in found.items()}


class StatsTracker:
    """Which records to write now: pure, given each collection's totals and the time."""

    def __init__(self, replica: str, started_ms: int) -> None:
        self.replica = replica
        self.started_ms = started_ms
        self._seen: dict[Series, Totals] = {}
        self._errors: dict[Series, LastError] = {}
        self._written: dict[Series, int] = {}  # when each was last written

    def update(self, current: Mapping[Series, Totals], now_ms: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for series, totals in current.items():
            before = self._seen.get(series)
            grown = {
                code: n - (before.failures.get(code, 0) if before else 0)
                for code, n in totals.failures.items()
            }
            worst = max(grown, key=lambda code: grown[code], default=None)
            if worst is not None and grown[worst] > 0:
                self._errors[series] = LastError(worst, now_ms)
            stale = now_ms - self._written.get(series, -HEARTBEAT_MS) >= HEARTBEAT_MS
            if totals != before or stale:
                self._seen[series] = totals
                self._written[series] = now_ms
                out.append(self._record(series, totals, now_ms))
        return out

    def _record(self, series: Series, totals: Totals, now_ms: int) -> tuple[str, dict[str, Any]]:
        namespace, kind, parent, name = series
        error = self._errors.get(series)
        value = {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "parent": parent,
            "replica": self.replica,
            "started": self.started_ms,
            "updated": now_ms,
            "delivered": totals.delivered,
            "retried": totals.retried,
            "deadLettered": totals.dead_lettered,
            "dropped": totals.dropped,
            "filtered": totals.filtered,
            "lastError": None if error is None else {"status": error.status, "time": error.time_ms},
        }
        return stats_key(kind, namespace, name, self.replica), value


@dataclass(frozen=True, slots=True)
class Statistics:
    """A resource's statistics summed over the replicas that reported them."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    filtered: int = 0
    replicas: int = 0
    since_ms: int | None = None
    updated_ms: int | None = None
    last_error: LastError | None = None


_COUNTS = {
    "delivered": "delivered",
    "retried": "retried",
    "deadLettered": "dead_lettered",
    "dropped": "dropped",
    "filtered": "filtered",
}


def aggregate(records: Mapping[str, Mapping[str, Any] | None]) -> Statistics:
    """Sum the latest record of each replica (`records` by key; None is a tombstone); records
    that are not well-formed are left out."""
    stats = Statistics()
    for value in records.values():
        if not isinstance(value, Mapping):
            continue
        counts = {field: value.get(key) for key, field in _COUNTS.items()}
        started, updated = value.get("started"), value.get("updated")
        if not (isinstance(started, int) and isinstance(updated, int)):
            continue
        if not all(type(n) is int and n >= 0 for n in counts.values()):
            continue
        summed = {field: getattr(stats, field) + n for field, n in counts.items()}
        error = value.get("lastError")
        last = stats.last_error
        if (
            isinstance(error, Mapping)
            and isinstance(error.get("status"), str)
            and type(error.get("time")) is int
            and (last is None or error["time"] > last.time_ms)
        ):
            last = LastError(error["status"][:16], error["time"])
        stats = replace(
            stats,
            **summed,
            replicas=stats.replicas + 1,
            since_ms=min(started, stats.since_ms or started),
            updated_ms=max(updated, stats.updated_ms or updated),
            last_error=last,
        )
    return stats


def decode(value: bytes | None) -> dict[str, Any] | None:
    """A stats record's value, or None for a tombstone or anything that is not one."""
    if value is None or len(value) > MAX_RECORD_BYTES:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StatsPublisher:
    """Writes this process's statistics records through `sink` until `stop` is set, and once
    more then."""

    def __init__(self, settings: Settings, sink: EventSink, *, interval: float = INTERVAL) -> None:
        self._settings = settings
        self._sink = sink
        self._interval = interval
        self._tracker = StatsTracker(_replica(), int(time.time() * 1000))

    async def run(self, stop: asyncio.Event) -> None:
        if not await self._ensure_topic():
            return
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await stop.wait()
            await self.publish()
            if stop.is_set():
                return

    async def publish(self) -> None:
        current = totals_from_metrics(metrics.EVENTS.collect(), metrics.ATTEMPTS.collect())
        updates = self._tracker.update(current, int(time.time() * 1000))
        if not updates:
            return
        records = [
            KafkaRecord(key.encode(), json.dumps(value, separators=(",", ":")).encode())
            for key, value in updates
        ]
        try:
            await self._sink.send(STATS_TOPIC, records)
        except KanalError as exc:
            log.warning("cannot write delivery statistics to %s: %s", STATS_TOPIC, exc)

    async def _ensure_topic(self) -> bool:
        admin = create_admin(self._settings)
        try:
            await admin.start()
            await ensure_topic(
                admin,
                STATS_TOPIC,
                partitions=1,
                replication_factor=self._settings.kafka_topic_replication_factor,
                config={"cleanup.policy": "compact,delete", "retention.ms": str(RETENTION_MS)},
            )
        except KafkaError as exc:
            log.warning(
                "delivery statistics are off: cannot create topic %s (%s); kanal describe shows none",
                STATS_TOPIC,
                exc,
            )
            return False
        finally:
            await admin.close()
        return True
