"""The deduplication window annotation: what each value means, and every invalid one (or one on a
kind that does not take it) refused at apply with the annotation named."""

from __future__ import annotations

from typing import Any

import pytest

from channel.errors import ValidationError
from channel.resources.deduplication import DEDUPLICATION_WINDOW, deduplication_window
from channel.resources.manifests import parse_resource


def _doc(kind: str, annotations: dict[str, str]) -> dict[str, Any]:
    version = "eventing.knative.dev/v1" if kind in ("Broker", "Trigger") else "messaging.knative.dev/v1"
    doc: dict[str, Any] = {
        "apiVersion": version,
        "kind": kind,
        "metadata": {"name": "r", "namespace": "ns", "annotations": annotations},
    }
    if kind == "Trigger":
        doc["spec"] = {"broker": "default", "subscriber": {"uri": "http://sink.example/"}}
    elif kind == "Subscription":
        channel = {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "c"}
        doc["spec"] = {"channel": channel, "subscriber": {"uri": "http://sink.example/"}}
    return doc


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("PT10M", 600.0, id="ten-minutes"),
        pytest.param("PT3S", 3.0, id="seconds"),
        pytest.param("PT0.5S", 0.5, id="fraction"),
        pytest.param("PT1H30M", 5400.0, id="hours-minutes"),
        pytest.param("P1D", 86400.0, id="a-day"),
        pytest.param("P7D", 7 * 86400.0, id="the-bound"),
        pytest.param("pt10m", 600.0, id="lower-case"),
    ],
)
def test_valid_windows(value: str | None, seconds: float | None) -> None:
    annotations = {} if value is None else {DEDUPLICATION_WINDOW: value}
    assert deduplication_window(annotations) == seconds
    for kind in ("Broker", "Channel"):
        parse_resource(_doc(kind, annotations))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("PT0S", id="zero"),
        pytest.param("P0D", id="zero-days"),
        pytest.param("P8D", id="over-seven-days"),
        pytest.param("PT168H1S", id="just-over-the-bound"),
        pytest.param("10m", id="not-iso"),
        pytest.param("600", id="bare-number"),
        pytest.param("PT", id="empty-time-part"),
        pytest.param("", id="empty"),
        pytest.param("-PT10M", id="negative"),
    ],
)
def test_invalid_windows_are_refused_naming_the_annotation(value: str) -> None:
    with pytest.raises(ValidationError) as raised:
        deduplication_window({DEDUPLICATION_WINDOW: value})
    [problem] = raised.value.problems
    assert problem.path == f"metadata.annotations.{DEDUPLICATION_WINDOW}"
    assert "P7D" in problem.message and repr(value) in problem.message
    with pytest.raises(ValidationError) as raised:
        parse_resource(_doc("Broker", {DEDUPLICATION_WINDOW: value}))
    assert DEDUPLICATION_WINDOW in str(raised.value)


@pytest.mark.parametrize("kind", ["Trigger", "Subscription"])
def test_only_a_broker_or_channel_takes_it(kind: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_resource(_doc(kind, {DEDUPLICATION_WINDOW: "PT10M"}))
    assert DEDUPLICATION_WINDOW in str(raised.value)
    assert "only a Broker or Channel" in str(raised.value)
