"""PingSource: the model's validation, schedules in time zones (DST), due ticks, the event."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from channel.control.reconcile import Addressing, reconcile
from channel.errors import ValidationError
from channel.kafka import broker_topic
from channel.resources.manifests import parse_resource
from channel.resources.model import PingSource, Resource
from channel.sources.ping import PING_TYPE, Due, due_ticks, ping_event
from channel.sources.schedule import Schedule, ScheduleError
from kanal.cli.tables import render

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
    ("spec", "field", "message"),
    [
        ({"schedule": "* * *"}, "spec.schedule", "has 3 fields"),
        ({"schedule": "99 * * * *"}, "spec.schedule", "not a valid cron schedule"),
        ({"timezone": "Moon/Tranquility"}, "spec.timezone", "unknown time zone"),
        ({"dataBase64": "aGk="}, "spec.dataBase64", "not both"),
        ({"data": None, "dataBase64": "@@@"}, "spec.dataBase64", "not valid base64"),
        ({"sink": {}}, "spec.sink", "ref or uri"),
        ({"ceOverrides": {"extensions": {"Bad-Name": "x"}}}, "spec.ceOverrides", "extension names"),
    ],
    ids=["fields", "range", "timezone", "both-data", "base64", "sink", "extension"],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        _source(**spec)
    [problem] = info.value.problems
    assert field in problem.path and message in problem.message, problem


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValidationError) as info:
        _source(schedule="61 * * * *", timezone="Nowhere/Land", dataBase64="aGk=")
    paths = sorted(p.path.rsplit(" ", 1)[-1] for p in info.value.problems)
    assert paths == ["spec.dataBase64", "spec.schedule", "spec.timezone"], info.value.problems


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
    due = due_ticks(schedule, None, created, now, catch_up=300)
    assert due.skipped == 5 and len(due.send) == 5
    assert due.skipped_until == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert due.send[0] == datetime(2026, 1, 1, 0, 6, tzinfo=UTC)
    last = due.send[-1]
    assert due_ticks(schedule, last, created, now, catch_up=300) == Due([])
    later = due_ticks(schedule, last, created, now + timedelta(minutes=2), catch_up=300)
    assert later == Due([last + timedelta(minutes=1), last + timedelta(minutes=2)])


def test_skipped_ticks_are_reported_once_and_count_as_handled() -> None:
    # Hourly, and the controller is back 10 minutes after the hour: nothing is young enough.
    schedule = Schedule("0 * * * *")
    last = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 2, 10, tzinfo=UTC)
    due = due_ticks(schedule, last, last, now, catch_up=300)
    assert due == Due([], 2, datetime(2026, 1, 1, 2, 0, tzinfo=UTC))
    assert due_ticks(schedule, due.skipped_until, last, now, catch_up=300) == Due([])


def test_a_long_outage_of_a_seconds_schedule_is_cheap() -> None:
    schedule = Schedule("* * * * * *")
    last = datetime(2026, 1, 1, tzinfo=UTC)
    now = last + timedelta(days=30)
    due = due_ticks(schedule, last, last, now, catch_up=3)
    assert due.skipped == 10_000  # counting stops there; the newest skipped is still exact
    assert due.skipped_until == now - timedelta(seconds=4)
    assert due.send == [now - timedelta(seconds=s) for s in (3, 2, 1, 0)]


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
    # `kn source list`'s columns, then REASON and AGE.
    assert lines[0].split() == ["NAME", "TYPE", "RESOURCE", "SINK", "READY", "REASON", "AGE"]
    assert lines[1].split()[:5] == [
        "heartbeat",
        "PingSource",
        "pingsources.sources.knative.dev",
        "http://s/",
        "True",
    ]
    # Knative's PingSource printer columns.
    ping = render("PingSource", [doc], "", True).splitlines()
    assert ping[0].split() == ["NAMESPACE", "NAME", "SINK", "SCHEDULE", "AGE", "READY", "REASON"]
    assert ping[1].split()[:4] == ["ns", "heartbeat", "http://s/", "*/2"]


@pytest.mark.parametrize(
    ("sink", "broker_topic_exists", "expected"),
    [
        (
            {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}},
            True,
            ("True", "http://127.0.0.1:8080/ns/default"),
        ),
        (
            {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}},
            False,
            ("False", None),
        ),
        (
            {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "nope"}},
            True,
            ("False", None),
        ),
        ({"uri": "http://sink.example/"}, False, ("True", "http://sink.example/")),
    ],
    ids=["broker-ref", "broker-not-ready", "missing-broker", "uri"],
)
def test_the_sink_resolves_like_a_triggers_subscriber(
    sink: dict[str, Any], broker_topic_exists: bool, expected: tuple[str, str | None]
) -> None:
    broker = parse_resource(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": "ns"},
        }
    )
    assert isinstance(broker, Resource)
    source = _source(sink=sink)
    topics = frozenset({broker_topic("ns", "default")} if broker_topic_exists else ())
    statuses = reconcile(
        {broker.key: broker, source.key: source},
        topics,
        Addressing(ingress_url="http://127.0.0.1:8080"),
        "2026-01-01T00:00:00Z",
    )
    status = statuses[source.key]
    ready = status.condition("Ready")
    assert ready is not None
    assert (ready.status, status.sink_uri) == expected
