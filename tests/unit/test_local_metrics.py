"""The lock-free metrics export exactly what prometheus-client's Counter and Histogram export."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from channel.metrics import LocalCounter, LocalHistogram

BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.1, 1.0, 10.0)


def _samples(registry: CollectorRegistry) -> list[str]:
    """Exposition lines without comments and without prometheus-client's `_created` series."""
    text = generate_latest(registry).decode()
    return sorted(
        line for line in text.splitlines() if line and not line.startswith("#") and "_created" not in line
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.sampled_from(BUCKETS), st.floats(min_value=0, max_value=100)),
        ),
        max_size=60,
    )
)
def test_histogram_exposition_matches_prometheus_client(observations: list[tuple[str, float]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = LocalHistogram("t_seconds", "doc", ["route"], buckets=BUCKETS, registry=ours)
    reference = Histogram("t_seconds", "doc", ["route"], buckets=BUCKETS, registry=theirs)
    for route, value in observations:
        local.labels(route).observe(value)
        reference.labels(route).observe(value)
    assert _samples(ours) == _samples(theirs)


@given(st.lists(st.tuples(st.sampled_from(["x", "y"]), st.integers(min_value=1, max_value=5)), max_size=30))
def test_counter_exposition_matches_prometheus_client(increments: list[tuple[str, int]]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = LocalCounter("t_events", "doc", ["code"], registry=ours)
    reference = Counter("t_events", "doc", ["code"], registry=theirs)
    for code, amount in increments:
        local.labels(code).inc(amount)
        reference.labels(code).inc(amount)
    assert _samples(ours) == _samples(theirs)


def test_unlabelled_histogram_is_exported_before_any_observation() -> None:
    registry = CollectorRegistry()
    LocalHistogram("idle_seconds", "doc", buckets=BUCKETS, registry=registry)
    assert 'idle_seconds_bucket{le="+Inf"} 0.0' in _samples(registry)


def test_wrong_number_of_labels_is_refused() -> None:
    counter = LocalCounter("t_labels", "doc", ["a", "b"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="t_labels takes labels"):
        counter.labels("only-one")


@given(st.lists(st.one_of(st.sampled_from(BUCKETS), st.floats(min_value=0, max_value=100)), max_size=40))
def test_unlabelled_histogram_observe_matches_prometheus_client(values: list[float]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    local = LocalHistogram("u_seconds", "doc", buckets=BUCKETS, registry=ours)
    reference = Histogram("u_seconds", "doc", buckets=BUCKETS, registry=theirs)
    for value in values:
        local.observe(value)
        reference.observe(value)
    assert _samples(ours) == _samples(theirs)


def test_observe_without_labels_on_a_labelled_histogram_is_refused() -> None:
    histogram = LocalHistogram("l_seconds", "doc", ["route"], buckets=BUCKETS, registry=CollectorRegistry())
    with pytest.raises(ValueError, match="observe through labels"):
        histogram.observe(0.1)
