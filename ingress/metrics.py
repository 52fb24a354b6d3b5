"""The ingress's Prometheus metrics. Names and labels are stable and documented in docs/reference/metrics.md.

Every label value comes from Kanal's resources (a Broker's or Channel's kind, namespace and name)
or from a fixed set (status codes), except `event_type`, which the sender chooses: that one goes
through `EventTypeLabels`, so no sender can add series without bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import Gauge

from channel.metrics import LocalCounter, LocalHistogram

__all__ = [
    "BATCH_SIZE",
    "EVENTS",
    "IN_FLIGHT",
    "OTHER_EVENT_TYPE",
    "PRODUCE_LATENCY",
    "REQUEST_LATENCY",
    "EventTypeLabels",
]

# The `event_type` label of the events whose type has no series of its own.
OTHER_EVENT_TYPE: Final = "other"
# Longer types are counted as `other` even while there is room: a label value is kept in every
# scrape for the life of the process.
MAX_EVENT_TYPE_LABEL: Final = 128


class EventTypeLabels(dict[str, str]):
    """The `event_type` label of each event type: `labels[event.type]`, one dict lookup for a type
    seen before.

    With an allow list, exactly those types keep their name. Without one, the first `limit` types
    this process sees keep theirs for as long as it runs, and every later type is `other`. Not
    "the top N by count" on purpose: a sender who can send many types could then push a real type
    out of the top N, and a series dropped and later admitted again starts from zero, which
    Prometheus reads as a counter reset (rate() shows a spike, or the counts in between are lost).
    First-seen-and-kept never drops a series, so every series is a true counter; a hostile sender
    can at worst use up the free places before the real types arrive (their events then count as
    `other`, still in the Broker's totals), which an allow list prevents. Types not admitted are
    not remembered, so memory stays bounded too."""

    __slots__ = ("_room",)

    def __init__(self, allowed: Iterable[str] | None = None, limit: int = 50) -> None:
        if allowed is not None:
            super().__init__((t, t) for t in allowed)
            self._room = 0
        else:
            super().__init__()
            self._room = limit

    def __missing__(self, event_type: str) -> str:
        if self._room > 0 and len(event_type) <= MAX_EVENT_TYPE_LABEL:
            self._room -= 1
            self[event_type] = event_type
            return event_type
        return OTHER_EVENT_TYPE


_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

EVENTS = LocalCounter(
    "kanal_ingress_events",
    "Events received by the ingress, by destination, event type and response code",
    ["kind", "namespace", "name", "event_type", "code"],
)
REQUEST_LATENCY = LocalHistogram(
    "kanal_ingress_request_duration_seconds",
    "Time from request to response, by response code",
    ["kind", "namespace", "name", "code"],
    buckets=_LATENCY_BUCKETS,
)
PRODUCE_LATENCY = LocalHistogram(
    "kanal_ingress_produce_duration_seconds",
    "Time Kafka took to acknowledge (acks=all) the events of one request",
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("kanal_ingress_in_flight_requests", "Requests being handled now")
BATCH_SIZE = LocalHistogram(
    "kanal_ingress_batch_size",
    "Events per request (1 for binary and structured mode)",
    buckets=(0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
