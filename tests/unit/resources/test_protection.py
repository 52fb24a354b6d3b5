"""Subscriber protection annotations: what each value means, and every invalid one refused at
apply with the annotation named."""

from __future__ import annotations

from typing import Any

import pytest

from channel.errors import ValidationError
from channel.resources.manifests import parse_resource
from channel.resources.model import Trigger
from channel.resources.protection import (
    ADAPTIVE_CONCURRENCY,
    MAX_IN_FLIGHT,
    RATE_LIMIT,
    RATE_LIMIT_BURST,
    Protection,
)


def _trigger(annotations: dict[str, Any], kind: str = "Trigger") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": kind,
        "metadata": {"name": "t", "namespace": "ns", "annotations": annotations},
    }
    if kind == "Trigger":
        doc["spec"] = {"broker": "default", "subscriber": {"uri": "http://sink.example/"}}
    return doc


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, Protection(), id="none"),
        pytest.param({MAX_IN_FLIGHT: "20"}, Protection(max_in_flight=20), id="max-in-flight"),
        pytest.param({MAX_IN_FLIGHT: "10000"}, Protection(max_in_flight=10_000), id="max-in-flight-bound"),
        pytest.param({RATE_LIMIT: "200"}, Protection(rate_limit=200.0), id="rate"),
        pytest.param({RATE_LIMIT: "0.5"}, Protection(rate_limit=0.5), id="rate-decimal"),
        pytest.param({RATE_LIMIT: ".25"}, Protection(rate_limit=0.25), id="rate-leading-dot"),
        pytest.param(
            {RATE_LIMIT: "50", RATE_LIMIT_BURST: "5"},
            Protection(rate_limit=50.0, rate_limit_burst=5),
            id="burst",
        ),
        pytest.param({ADAPTIVE_CONCURRENCY: "false"}, Protection(adaptive=False), id="adaptive-off"),
        pytest.param({ADAPTIVE_CONCURRENCY: "true"}, Protection(adaptive=True), id="adaptive-on"),
        pytest.param({"kanal.dev/other": "x"}, Protection(), id="other-annotations-ignored"),
    ],
)
def test_valid_annotations(annotations: dict[str, str], expected: Protection) -> None:
    assert Protection.from_annotations(annotations) == expected
    trigger = parse_resource(_trigger(annotations))
    assert isinstance(trigger, Trigger)


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        pytest.param({MAX_IN_FLIGHT: "0"}, [MAX_IN_FLIGHT], id="max-in-flight-zero"),
        pytest.param({MAX_IN_FLIGHT: "-3"}, [MAX_IN_FLIGHT], id="max-in-flight-negative"),
        pytest.param({MAX_IN_FLIGHT: "2.5"}, [MAX_IN_FLIGHT], id="max-in-flight-decimal"),
        pytest.param({MAX_IN_FLIGHT: "10001"}, [MAX_IN_FLIGHT], id="max-in-flight-over-bound"),
        pytest.param({MAX_IN_FLIGHT: "ten"}, [MAX_IN_FLIGHT], id="max-in-flight-word"),
        pytest.param({MAX_IN_FLIGHT: ""}, [MAX_IN_FLIGHT], id="max-in-flight-empty"),
        pytest.param({RATE_LIMIT: "0"}, [RATE_LIMIT], id="rate-zero"),
        pytest.param({RATE_LIMIT: "-1"}, [RATE_LIMIT], id="rate-negative"),
        pytest.param({RATE_LIMIT: "1e3"}, [RATE_LIMIT], id="rate-exponent"),
        pytest.param({RATE_LIMIT: "inf"}, [RATE_LIMIT], id="rate-inf"),
        pytest.param({RATE_LIMIT: "nan"}, [RATE_LIMIT], id="rate-nan"),
        pytest.param({RATE_LIMIT: "2000000"}, [RATE_LIMIT], id="rate-over-bound"),
        pytest.param({RATE_LIMIT: "10/s"}, [RATE_LIMIT], id="rate-with-unit"),
        pytest.param({RATE_LIMIT_BURST: "0"}, [RATE_LIMIT_BURST], id="burst-zero"),
        pytest.param({RATE_LIMIT_BURST: "1.5"}, [RATE_LIMIT_BURST], id="burst-decimal"),
        pytest.param({ADAPTIVE_CONCURRENCY: "False"}, [ADAPTIVE_CONCURRENCY], id="adaptive-capitalised"),
        pytest.param({ADAPTIVE_CONCURRENCY: "no"}, [ADAPTIVE_CONCURRENCY], id="adaptive-no"),
        pytest.param(
            {MAX_IN_FLIGHT: "0", RATE_LIMIT: "x", ADAPTIVE_CONCURRENCY: "0"},
            [MAX_IN_FLIGHT, RATE_LIMIT, ADAPTIVE_CONCURRENCY],
            id="every-problem-listed",
        ),
    ],
)
def test_invalid_annotations_are_refused_naming_them(annotations: dict[str, str], named: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_resource(_trigger(annotations))
    paths = [problem.path for problem in caught.value.problems]
    assert paths == [f"Trigger ns/t (document): metadata.annotations.{name}" for name in named]
    for problem in caught.value.problems:
        assert repr(annotations[problem.path.rsplit(".annotations.", 1)[1]]) in problem.message


def test_protection_on_a_broker_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_resource(_trigger({MAX_IN_FLIGHT: "4"}, kind="Broker"))
    [problem] = caught.value.problems
    assert problem.path.endswith(f"metadata.annotations.{MAX_IN_FLIGHT}")
    assert "Trigger or Subscription" in problem.message
