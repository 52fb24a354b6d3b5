"""The ingress's metrics stay bounded whatever senders send: the event-type label (an allow list,
or the first N types seen and `other`), and /metrics is no route of the ingress port."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from test_app import BINARY, call

from channel.settings import Settings
from ingress.app import IngressApp
from ingress.metrics import MAX_EVENT_TYPE_LABEL, OTHER_EVENT_TYPE, EventTypeLabels
from ingress.routing import Route
from support.memory_sink import MemoryEventSink


@pytest.mark.parametrize(
    ("allowed", "limit", "sent", "labels"),
    [
        pytest.param(None, 2, ["a", "b", "c", "a", "d"], ["a", "b", "other", "a", "other"], id="first-2"),
        pytest.param(None, 0, ["a", "b"], ["other", "other"], id="none-admitted"),
        pytest.param(["b", "d"], 50, ["a", "b", "c", "d"], ["other", "b", "other", "d"], id="allow-list"),
        pytest.param(["b"], 50, ["c"] * 3 + ["b"], ["other"] * 3 + ["b"], id="allow-list-not-filled"),
        pytest.param(None, 5, ["x" * (MAX_EVENT_TYPE_LABEL + 1), "y"], ["other", "y"], id="too-long"),
    ],
)
def test_event_type_labels(allowed: list[str] | None, limit: int, sent: list[str], labels: list[str]) -> None:
    types = EventTypeLabels(allowed, limit)
    assert [types[t] for t in sent] == labels


def test_types_not_admitted_are_not_remembered() -> None:
    types = EventTypeLabels(None, 3)
    for i in range(10_000):
        types[f"t{i}"]
    assert len(types) == 3
    assert types["t0"] == "t0" and types["t9999"] == OTHER_EVENT_TYPE


def test_an_admitted_type_keeps_its_series_forever() -> None:
    # No eviction: a series that disappeared and came back would read as a counter reset.
    types = EventTypeLabels(None, 2)
    assert types["real"] == "real"
    for i in range(1000):
        types[f"flood{i}"]
    assert types["real"] == "real"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("", None, id="unset"),
        pytest.param(" , ", None, id="only-separators"),
        pytest.param("a.b, c.d ,e", frozenset({"a.b", "c.d", "e"}), id="list"),
    ],
)
def test_the_allow_list_setting(value: str, expected: frozenset[str] | None) -> None:
    assert Settings(ingress_metrics_event_types=value).metrics_event_types() == expected


def _series(namespace: str) -> dict[str, float]:
    """event_type -> count of the ingress's 202s for Broker `namespace`/default."""
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        if family.name != "kanal_ingress_events":
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels["namespace"] == namespace and labels["code"] == "202":
                out[labels["event_type"]] = sample.value
    return out


@pytest.mark.parametrize(
    ("settings", "namespace", "admitted"),
    [
        pytest.param({"ingress_metrics_max_event_types": 7}, "cardinality-first", 7, id="first-n"),
        pytest.param(
            {"ingress_metrics_event_types": "type-3,type-1999,never-sent"},
            "cardinality-allow",
            2,
            id="allow-list",
        ),
    ],
)
async def test_many_distinct_types_keep_the_exposition_bounded(
    settings: dict[str, object], namespace: str, admitted: int
) -> None:
    """A sender with 2,000 types makes at most N+1 series (N types and `other`), and every event
    is still counted."""
    app = IngressApp(Settings(**settings), MemoryEventSink(), ready=lambda: True)  # type: ignore[arg-type]
    app.routes = {("broker", namespace, "default"): Route("broker", namespace, "default", "topic")}
    for i in range(2000):
        headers = [*[(k, v) for k, v in BINARY if k != b"ce-type"], (b"ce-type", f"type-{i}".encode())]
        status, _, _ = await call(app, "POST", f"/{namespace}/default", headers, b"{}")
        assert status == 202
    series = _series(namespace)
    assert len(series) == admitted + 1
    assert series[OTHER_EVENT_TYPE] == 2000 - admitted
    assert sum(series.values()) == 2000


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_metrics_is_no_route_of_the_ingress_port(method: str) -> None:
    app = IngressApp(Settings(), MemoryEventSink(), ready=lambda: True)
    status, _, body = await call(app, method, "/metrics", BINARY if method == "POST" else [], b"{}")
    assert status == 404
    assert b"kanal_ingress" not in body
