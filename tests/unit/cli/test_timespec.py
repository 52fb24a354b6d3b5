"""Times, offsets and the progress bar of `kanal replay` and `kanal deadletters`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from channel.errors import ValidationError
from channel.resources.manifests import parse_resource
from channel.topics import RangeStart
from kanal.cli.replay import parse_start
from kanal.cli.timespec import parse_offsets, parse_time_ms


def test_times() -> None:
    assert parse_time_ms("2026-11-25T10:00:00Z") == 1795600800000
    assert parse_time_ms("2026-11-25T11:00:00+01:00") == 1795600800000
    assert parse_time_ms("2026-11-25T10:00:00") == 1795600800000  # no zone: UTC
    assert parse_time_ms("90s", now=1000.0) == 910_000
    assert parse_time_ms("2h", now=10_000.0) == 2_800_000
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time_ms("yesterday")


def test_offsets_and_starts() -> None:
    assert parse_offsets("120") == 120
    assert parse_offsets("0:120, 1:80") == {0: 120, 1: 80}
    assert parse_offsets("0:x") is None
    assert parse_start("7") == RangeStart(offset=7)
    assert parse_start("1:5") == RangeStart(offsets={1: 5})
    assert parse_start("2026-11-25T10:00:00Z") == RangeStart(time_ms=1795600800000)


TRIGGER: dict[str, Any] = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Trigger",
    "metadata": {"name": "t", "namespace": "n", "annotations": {"kanal.dev/dead-letter-topic": "dead.t"}},
    "spec": {"broker": "default", "subscriber": {"uri": "http://s/"}},
}


def test_dead_letter_topic_annotation_is_validated() -> None:
    parse_resource(TRIGGER)
    bad = copy.deepcopy(TRIGGER)
    bad["metadata"]["annotations"]["kanal.dev/dead-letter-topic"] = "no spaces allowed"
    with pytest.raises(ValidationError, match="dead-letter-topic"):
        parse_resource(bad)
    broker = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b", "annotations": {"kanal.dev/dead-letter-topic": "x"}},
    }
    with pytest.raises(ValidationError, match="Trigger or Subscription"):
        parse_resource(broker)
