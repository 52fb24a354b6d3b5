"""The dispatcher's Prometheus metrics. Names and labels are stable and documented in the README."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["ATTEMPTS", "DELIVERY_LATENCY", "EVENTS", "LAG", "NON_EVENTS", "REPLIES", "child"]

M = TypeVar("M", Counter, Histogram)
_children: dict[tuple[object, tuple[str, ...]], object] = {}


def child(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, looked up once: `labels` validates and locks on every call, and
    the delivery path counts several times per event. Only for metrics whose labelled series are
    never removed (not LAG)."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found  # type: ignore[return-value]


EVENTS = Counter(
    "kanal_dispatcher_events",
    "Events handled per Trigger, by final outcome: delivered, dead_lettered, dropped, filtered",
    ["namespace", "trigger", "outcome"],
)
ATTEMPTS = Counter(
    "kanal_dispatcher_attempts",
    "HTTP delivery attempts per Trigger and destination kind, by response code ('none' = no response)",
    ["namespace", "trigger", "destination", "code"],
)
DELIVERY_LATENCY = Histogram(
    "kanal_dispatcher_delivery_duration_seconds",
    "Time of one delivery attempt to a subscriber",
    ["namespace", "trigger"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
REPLIES = Counter(
    "kanal_dispatcher_replies",
    "Reply events per Trigger, by what happened: stored, loop_dropped",
    ["namespace", "trigger", "result"],
)
NON_EVENTS = Counter(
    "kanal_dispatcher_invalid_records",
    "Kafka records that are not CloudEvents, skipped (offset committed)",
    ["topic"],
)
LAG = Gauge(
    "kanal_dispatcher_consumer_lag",
    "Records between a Trigger's committed offset and the partition's high watermark",
    ["namespace", "trigger", "partition"],
)
