"""Where a Trigger's lane begins on a partition: its committed offset, else the start point the
controller recorded when it was created (else, for a Trigger from before start points, its
creation time: `CreationFloor`, in test_policy); and the start point reaches the dispatcher's
plan from the stored status."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition

from channel.resources.start import START_OFFSETS, StartPoint
from dispatcher.offsets import first_offsets
from dispatcher.plan import plans_from_documents

TOPIC = "knative-broker.ns.default"
P0, P1, P2 = (TopicPartition(TOPIC, n) for n in range(3))
RECORDED = StartPoint.of({0: 150, 1: 147, 2: 153})


@pytest.mark.parametrize(
    ("committed", "start", "log_starts", "expected"),
    [
        pytest.param({}, RECORDED, {}, {P0: 150, P1: 147, P2: 153}, id="new"),
        pytest.param({P0: 170}, RECORDED, {}, {P0: 170, P1: 147, P2: 153}, id="committed-wins"),
        # Committed offsets below the start point are the Trigger's own progress: kept.
        pytest.param({P1: 100}, RECORDED, {}, {P0: 150, P1: 100, P2: 153}, id="committed-low"),
        pytest.param({}, StartPoint.of({0: 150}), {P1: 9}, {P0: 150, P1: 9, P2: 0}, id="partitions-added"),
        pytest.param({}, StartPoint(), {}, {P0: 0, P1: 0, P2: 0}, id="topic-made-after-the-trigger"),
        pytest.param({}, StartPoint.of({0: 150}), {P0: 400}, {P0: 400, P1: 0, P2: 0}, id="past-retention"),
        pytest.param({P2: 3}, None, {}, {P2: 3}, id="no-start-point-the-rest-by-time"),
    ],
)
def test_first_offsets(
    committed: dict[TopicPartition, int],
    start: StartPoint | None,
    log_starts: dict[TopicPartition, int],
    expected: dict[TopicPartition, int],
) -> None:
    assert first_offsets([P0, P1, P2], committed, start, log_starts) == expected


CREATED = "2026-12-07T06:16:00Z"


def _ready(**status: Any) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": "True"}], **status}


def _documents(trigger_status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "Broker/ns/default": {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": "ns"},
            "status": _ready(address={"url": "http://ingress/ns/default"}),
        },
        "Trigger/ns/t": {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "ns", "uid": "u1", "creationTimestamp": CREATED},
            "spec": {"broker": "default", "subscriber": {"uri": "http://sink/"}},
            "status": trigger_status,
        },
    }


@pytest.mark.parametrize(
    ("annotations", "start"),
    [
        pytest.param({START_OFFSETS: "0:150,1:147"}, StartPoint.of({0: 150, 1: 147}), id="recorded"),
        pytest.param({START_OFFSETS: ""}, StartPoint(), id="empty"),
        pytest.param(None, None, id="from-before-start-points"),
    ],
)
def test_the_plan_carries_the_recorded_start_point(
    annotations: dict[str, str] | None, start: StartPoint | None
) -> None:
    status = _ready(
        subscriberUri="http://sink/", **({"annotations": annotations} if annotations is not None else {})
    )
    plans = plans_from_documents(_documents(status), topic_prefix="knative-broker", default_timeout=30)
    plan = plans["Trigger/ns/t"]
    assert plan.start == start
    assert plan.created_ms == 1_796_624_160_000
