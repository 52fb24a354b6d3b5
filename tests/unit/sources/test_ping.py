"""PingSource: the model's validation, schedules in time zones (DST), due ticks, the event."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channel.cli.tables import render
from channel.errors import ValidationError
from channel.resources.manifests import parse_resource
from channel.resources.model import PingSource
from channel.sources.ping import PING_TYPE, due_ticks, ping_event
from channel.sources.schedule import Schedule, ScheduleError

BASE: dict[str, Any] = {
    "apiVersion": "sources.knative.dev/v1",
    "kind": "PingSource",
    "metadata": {"name": "heartbeat", "namespace": "ns", "uid": "1234-abcd"},
    "spec": {"schedule": "*/2 * * * *", "data": '{"message": "Hello world!"}', "sink": {"uri": "http://s/"}},
}


def _source(**spec: Any) -> PingSource:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec)
    parsed = parse_resource(doc)
    assert isinstance(parsed, PingSource)
    return parsed


def test_knatives_example_applies() -> None:
    source = _source(contentType="application/json")
    assert source.spec.payload() == b'{"message": "Hello world!"}'


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"schedule": "* * *"}, "schedule"),
        ({"schedule": "99 * * * *"}, "schedule"),
        ({"timezone": "Moon/Tranquility"}, "timezone"),
        ({"dataBase64": "aGk="}, "data and dataBase64"),
        ({"data": None, "dataBase64": "@@@"}, "dataBase64"),
        ({"sink": {}}, "sink"),
        ({"ceOverrides": {"extensions": {"Bad-Name": "x"}}}, "extension names"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        _source(**spec)
    assert any(message in str(p) for p in info.value.problems), info.value.problems


def test_data_base64_is_decoded() -> None:
    raw = bytes(range(256))
    source = _source(data=None, dataBase64=base64.b64encode(raw).decode())
    assert source.spec.payload() == raw


def test_a_daily_ping_keeps_local_time_across_dst() -> None:
    schedule = Schedule("0 9 * * *", "Europe/Paris")
    start = datetime(2026, 3, 27, 12, tzinfo=UTC)
    ticks = schedule.ticks_between(start, start + timedelta(days=3))
    # 09:00 in Paris is 08:00 UTC before the change on 29 March 2026 and 07:00 UTC after it.
    assert [t.hour for t in ticks] == [8, 7, 7]
    assert all(t.tzinfo == UTC for t in ticks)


def test_seconds_schedules_and_macros() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert [
        t.second for t in Schedule("*/2 * * * * *").ticks_between(start, start + timedelta(seconds=6))
    ] == [
        2,
        4,
        6,
    ]
    assert Schedule("@hourly").next_after(start) == start + timedelta(hours=1)
    with pytest.raises(ScheduleError):
        Schedule("* * * * * * *")


def test_due_ticks_resume_after_the_last_and_skip_what_is_too_old() -> None:
    schedule = Schedule("* * * * *")
    created = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)
    now = created + timedelta(minutes=10)
    ticks, skipped = due_ticks(schedule, None, created, now, catch_up=300)
    assert skipped == 5 and len(ticks) == 5
    assert ticks[0] == datetime(2026, 1, 1, 0, 6, tzinfo=UTC)
    last = ticks[-1]
    assert due_ticks(schedule, last, created, now, catch_up=300) == ([], 0)
    later, skipped = due_ticks(schedule, last, created, now + timedelta(minutes=2), catch_up=300)
    assert skipped == 0 and later == [last + timedelta(minutes=1), last + timedelta(minutes=2)]


def test_the_event_of_a_tick() -> None:
    source = _source(contentType="application/json", ceOverrides={"extensions": {"team": "blue"}})
    tick = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    event = ping_event(source, tick)
    assert event.attributes["type"] == PING_TYPE
    assert event.attributes["source"] == "/apis/v1/namespaces/ns/pingsources/heartbeat"
    assert event.attributes["time"] == "2026-05-01T12:30:00Z"
    assert event.attributes["datacontenttype"] == "application/json"
    assert event.attributes["team"] == "blue"
    assert event.data == b'{"message": "Hello world!"}'
    # The id is the same whoever sends the tick, and differs between ticks and sources.
    assert ping_event(source, tick).id == event.id
    assert ping_event(source, tick + timedelta(minutes=1)).id != event.id
    other = _source()
    other.metadata.uid = "5678"
    assert ping_event(other, tick).id != event.id


def test_get_sources_table() -> None:
    doc = _source().document()
    doc["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    doc["status"] = {"sinkUri": "http://s/", "conditions": [{"type": "Ready", "status": "True"}]}
    lines = render("Sources", [doc], "", False).splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "RESOURCE", "SINK", "AGE", "READY", "REASON"]
    assert lines[1].split()[:4] == ["heartbeat", "PingSource", "pingsources.sources.knative.dev", "http://s/"]
    ping = render("PingSource", [doc], "", True).splitlines()
    assert ping[0].split() == ["NAMESPACE", "NAME", "SCHEDULE", "SINK", "AGE", "READY", "REASON"]
