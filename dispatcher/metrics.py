"""The dispatcher's Prometheus metrics. Names and labels are stable and documented in
docs/reference/metrics.md."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Counter, Gauge

from channel.metrics import LocalCounter, LocalHistogram

__all__ = [
    "ATTEMPTS",
    "CONCURRENCY_LIMIT",
    "DELIVERY_LATENCY",
    "EVENTS",
    "IN_FLIGHT",
    "LAG",
    "NON_EVENTS",
    "PLAN_LABELS",
    "REPLIES",
    "THROTTLED",
    "code_label",
    "forget_protection",
    "track_protection",
]

# What each Trigger's or Subscription's series starts with (`Plan.series`): its namespace, its
# kind (trigger or subscription), its Broker or Channel (so a Channel's egress is counted), and
# its name. The name's label is `trigger` for both kinds.
PLAN_LABELS = ["namespace", "kind", "parent", "trigger"]

# Counted on the delivery path from the event loop's thread: lock-free, and `labels()` is one
# dict lookup (see channel.metrics).
EVENTS = LocalCounter(
    "kanal_dispatcher_events",
    "Events handled per Trigger or Subscription, by final outcome: delivered, dead_lettered, dropped,"
    " filtered",
    [*PLAN_LABELS, "outcome"],
)
ATTEMPTS = LocalCounter(
    "kanal_dispatcher_attempts",
    "HTTP delivery attempts per Trigger or Subscription and destination, by response code"
    " ('none' = no response)",
    [*PLAN_LABELS, "destination", "code"],
)
DELIVERY_LATENCY = LocalHistogram(
    "kanal_dispatcher_delivery_duration_seconds",
    "Time of one delivery attempt to a subscriber",
    PLAN_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REPLIES = LocalCounter(
    "kanal_dispatcher_replies",
    "Reply events per Trigger or Subscription, by what happened: stored, loop_dropped, discarded",
    [*PLAN_LABELS, "result"],
)
NON_EVENTS = LocalCounter(
    "kanal_dispatcher_invalid_records",
    "Kafka records that are not CloudEvents, skipped (offset committed)",
    ["topic"],
)
LAG = Gauge(
    "kanal_dispatcher_consumer_lag",
    "Records between a Trigger's or Subscription's committed offset and the partition's high watermark",
    [*PLAN_LABELS, "partition"],
)


class Protected(Protocol):
    """A Trigger's subscriber gate as its metrics see it (dispatcher.gate.Gate)."""

    @property
    def in_flight(self) -> int: ...

    @property
    def limit(self) -> int: ...

    on_wait: Callable[[float], None] | None


CONCURRENCY_LIMIT = Gauge(
    "kanal_dispatcher_concurrency_limit",
    "Deliveries a Trigger's or Subscription's subscriber may have in flight now (adaptive unless"
    " kanal.dev/adaptive-concurrency is false)",
    PLAN_LABELS,
)
IN_FLIGHT = Gauge(
    "kanal_dispatcher_in_flight",
    "Delivery attempts in flight to a Trigger's or Subscription's subscriber",
    PLAN_LABELS,
)
THROTTLED = Counter(
    "kanal_dispatcher_throttled_seconds",
    "Time deliveries to a Trigger's or Subscription's subscriber waited for its in-flight limit, rate"
    " limit or Retry-After pause, summed over deliveries",
    PLAN_LABELS,
)
# The gate each Trigger's protection series are read from. The gauges are read from it when
# scraped (nothing on the delivery path); the counter grows when a delivery had to wait.
_PROTECTED: dict[tuple[str, ...], Protected] = {}


def track_protection(series: tuple[str, ...], gate: Protected) -> None:
    """Give a Trigger's lane its protection series (one set per Trigger, replacing an older lane's)."""
    _PROTECTED[series] = gate
    CONCURRENCY_LIMIT.labels(*series).set_function(lambda: gate.limit)
    IN_FLIGHT.labels(*series).set_function(lambda: gate.in_flight)
    gate.on_wait = THROTTLED.labels(*series).inc


def forget_protection(series: tuple[str, ...], gate: Protected) -> None:
    """Remove a Trigger's protection series, if they are still `gate`'s (a re-created Trigger's
    new lane may have them)."""
    gate.on_wait = None
    if _PROTECTED.get(series) is not gate:
        return
    del _PROTECTED[series]
    for metric in (CONCURRENCY_LIMIT, IN_FLIGHT, THROTTLED):
        with contextlib.suppress(KeyError):
            metric.remove(*series)


# Every label but one comes from Kanal's resources (a Trigger's names, a topic) or a fixed set;
# the attempt's code comes from the subscriber's status line, which the parser takes as any three
# digits. Codes outside HTTP's 100-599 are one label, so a subscriber cannot add series at will.
_CODES = {status: str(status) for status in range(100, 600)}


def code_label(status: int | None) -> str:
    """The `code` label of an attempt: its status, `none` without a response, or `invalid`."""
    if not status:
        return "none"
    return _CODES.get(status, "invalid")
