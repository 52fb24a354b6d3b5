"""The ingress's Prometheus metrics. Names and labels are stable and documented in the README."""

from __future__ import annotations

from prometheus_client import Gauge

from channel.metrics import LocalCounter, LocalHistogram

__all__ = ["BATCH_SIZE", "EVENTS", "IN_FLIGHT", "PRODUCE_LATENCY", "REQUEST_LATENCY"]

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
