"""A Trigger's subscriber limits: its annotations over the global settings (`lane.limits_for`),
and the annotations reaching the dispatcher's plan from the stored resource."""

from __future__ import annotations

from typing import Any

import pytest

from channel.resources.protection import Protection
from channel.settings import Settings
from dispatcher.lane import limits_for
from dispatcher.limiter import Limits
from dispatcher.plan import plans_from_documents

DEFAULTS = Settings()


@pytest.mark.parametrize(
    ("protection", "settings", "expected"),
    [
        pytest.param(Protection(), DEFAULTS, Limits(max_in_flight=64), id="defaults"),
        pytest.param(Protection(max_in_flight=7), DEFAULTS, Limits(max_in_flight=7), id="own-max"),
        pytest.param(
            Protection(adaptive=False), DEFAULTS, Limits(max_in_flight=64, adaptive=False), id="own-fixed"
        ),
        pytest.param(
            Protection(),
            Settings(dispatcher_adaptive_concurrency=False, dispatcher_max_in_flight=9),
            Limits(max_in_flight=9, adaptive=False),
            id="global-fixed",
        ),
        pytest.param(
            Protection(adaptive=True),
            Settings(dispatcher_adaptive_concurrency=False),
            Limits(max_in_flight=64),
            id="own-adaptive-over-global-fixed",
        ),
        pytest.param(Protection(rate_limit=200.0), DEFAULTS, Limits(64, 200.0, 20), id="rate-burst-a-tenth"),
        pytest.param(Protection(rate_limit=0.5), DEFAULTS, Limits(64, 0.5, 1), id="slow-rate-burst-one"),
        pytest.param(
            Protection(rate_limit=50.0, rate_limit_burst=5), DEFAULTS, Limits(64, 50.0, 5), id="own-burst"
        ),
        pytest.param(
            Protection(),
            Settings(dispatcher_rate_limit=30.0, dispatcher_rate_limit_burst=2),
            Limits(64, 30.0, 2),
            id="global-rate",
        ),
        pytest.param(
            Protection(rate_limit_burst=8),
            Settings(dispatcher_rate_limit=30.0),
            Limits(64, 30.0, 8),
            id="own-burst-of-global-rate",
        ),
        pytest.param(
            Protection(rate_limit=100.0),
            Settings(dispatcher_rate_limit=30.0, dispatcher_rate_limit_burst=2),
            Limits(64, 100.0, 2),
            id="own-rate-global-burst",
        ),
    ],
)
def test_limits_for(protection: Protection, settings: Settings, expected: Limits) -> None:
    assert limits_for(protection, settings) == expected


def _documents(annotations: dict[str, str]) -> dict[str, dict[str, Any]]:
    ready = {"conditions": [{"type": "Ready", "status": "True"}]}
    return {
        "Broker/ns/default": {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": "ns"},
            "status": {**ready, "address": {"url": "http://ingress/ns/default"}},
        },
        "Trigger/ns/t": {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "ns", "uid": "u1", "annotations": annotations},
            "spec": {"broker": "default", "subscriber": {"uri": "http://sink/"}},
            "status": {**ready, "subscriberUri": "http://sink/"},
        },
    }


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, Protection(), id="none"),
        pytest.param(
            {"kanal.dev/max-in-flight": "3", "kanal.dev/rate-limit": "2.5"},
            Protection(max_in_flight=3, rate_limit=2.5),
            id="declared",
        ),
        # Apply refuses it; one stored before values were checked runs with the global settings.
        pytest.param({"kanal.dev/max-in-flight": "many"}, Protection(), id="invalid-stored"),
    ],
)
def test_the_plan_carries_the_annotations(annotations: dict[str, str], expected: Protection) -> None:
    plans = plans_from_documents(_documents(annotations), topic_prefix="knative-broker", default_timeout=30)
    assert plans["Trigger/ns/t"].protection == expected
