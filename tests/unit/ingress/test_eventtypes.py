"""The ingress's EventType recorder: counting, the cap, taking up its own records after a
restart, following the routes (pure, with a fake clock)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from channel.events import CloudEvent
from channel.resources.eventtype import EventTypeKey, Observed, eventtype_name, record_key
from ingress.eventtypes import EventTypeRecorder, stale_keys, uids_of
from ingress.routing import Route

ROUTE = Route("broker", "ns", "default", "topic.ns.default")
UIDS = {("Broker", "ns", "default"): "uid-1"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _event(type_: str = "t", source: str = "s", **extra: str) -> CloudEvent:
    return CloudEvent({"specversion": "1.0", "id": "1", "type": type_, "source": source, **extra})


def _recorder(clock: Clock, cap: int = 10, replica: str = "me") -> EventTypeRecorder:
    recorder = EventTypeRecorder(cap, replica, clock)
    recorder.set_routes([ROUTE], UIDS)
    return recorder


def _counts(changes: list[Observed]) -> dict[tuple[str, str, str | None, str | None], int]:
    return {(o.key.type, o.key.source, o.key.schema, o.key.content_type): o.count for o in changes}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param([], {}, id="none"),
        pytest.param([_event()] * 3, {("t", "s", None, None): 3}, id="one-kind"),
        pytest.param(
            [_event("a"), _event("b"), _event("a", "s2"), _event("a")],
            {("a", "s", None, None): 2, ("b", "s", None, None): 1, ("a", "s2", None, None): 1},
            id="type-and-source",
        ),
        pytest.param(
            [
                _event(dataschema="https://x/1"),
                _event(dataschema="https://x/2"),
                _event(datacontenttype="application/json"),
                _event(dataschema="https://x/1", datacontenttype="application/json"),
                _event(),
            ],
            {
                ("t", "s", "https://x/1", None): 1,
                ("t", "s", "https://x/2", None): 1,
                ("t", "s", None, "application/json"): 1,
                ("t", "s", "https://x/1", "application/json"): 1,
                ("t", "s", None, None): 1,
            },
            id="schema-and-content-type",
        ),
        pytest.param(
            [_event(subject="a"), _event(subject="b")], {("t", "s", None, None): 2}, id="other-attributes"
        ),
    ],
)
def test_counts_by_kind(clock: Clock, events: list[CloudEvent], expected: dict[object, int]) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, events)
    assert _counts(recorder.changes()) == expected


def test_first_seen_is_the_first_event_last_seen_the_flush_that_saw_it_grow(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [_event()])
    clock.now = 103.0
    [first] = recorder.changes()
    recorder.written([first])
    assert (first.first_ms, first.last_ms, first.count) == (100_000, 103_000, 1)
    clock.now = 108.0
    assert recorder.changes() == []  # nothing grew: nothing to write
    recorder.record(ROUTE, [_event(), _event()])
    clock.now = 110.0
    [second] = recorder.changes()
    assert (second.first_ms, second.last_ms, second.count) == (100_000, 110_000, 3)
    assert second.uid == "uid-1" and second.replica == "me"


def test_unwritten_changes_are_offered_again(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [_event()])
    assert len(recorder.changes()) == 1  # the write failed: not marked written
    recorder.record(ROUTE, [_event()])
    [again] = recorder.changes()
    assert again.count == 2


def test_an_unrouted_destination_is_not_recorded(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(Route("broker", "ns", "other", "topic.other"), [_event()])
    assert recorder.changes() == []


def test_the_example_has_attributes_never_data(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [CloudEvent({"type": "t", "source": "s", "id": "42", "subject": "x"}, b"secret")])
    [observed] = recorder.changes()
    assert observed.example == {"type": "t", "source": "s", "id": "42", "subject": "x"}
    assert b"secret" not in repr(observed).encode()


@pytest.mark.parametrize(
    ("cap", "known_elsewhere", "kinds", "recorded", "unrecorded", "at_cap"),
    [
        pytest.param(2, [], ["a", "b"], {"a", "b"}, 0, 0, id="up-to-the-cap"),
        pytest.param(2, [], ["a", "b", "c", "c", "a"], {"a", "b"}, 2, 1, id="over-the-cap"),
        pytest.param(2, ["x"], ["a", "b"], {"a"}, 1, 1, id="other-replicas-kinds-count"),
        pytest.param(1, ["a"], ["a", "b"], {"a"}, 1, 1, id="a-kind-known-elsewhere-is-recorded-at-the-cap"),
    ],
)
def test_the_cap(
    clock: Clock,
    cap: int,
    known_elsewhere: list[str],
    kinds: list[str],
    recorded: set[str],
    unrecorded: int,
    at_cap: int,
) -> None:
    route = Route("broker", "ns", f"cap{cap}{len(known_elsewhere)}{len(kinds)}", "t.cap")
    uids = {("Broker", "ns", route.name): "u"}
    recorder = EventTypeRecorder(cap, "me", clock)
    recorder.set_routes([route], uids)
    recorder.learn(
        Observed(EventTypeKey("Broker", "ns", route.name, k, "s"), "u", 1, 1, 1, {}, "other")
        for k in known_elsewhere
    )
    labels = {"kind": "Broker", "namespace": "ns", "name": route.name}
    recorder.record(route, [_event(k) for k in kinds])
    assert {o.key.type for o in recorder.changes()} == recorded
    assert (
        REGISTRY.get_sample_value("kanal_ingress_event_types_unrecorded_events_total", labels) or 0
    ) == unrecorded
    assert (REGISTRY.get_sample_value("kanal_ingress_event_types_at_cap", labels) or 0) == at_cap
    recorder.set_routes([], {})  # deleted: its series go
    assert REGISTRY.get_sample_value("kanal_ingress_event_types_at_cap", labels) is None
    assert REGISTRY.get_sample_value("kanal_ingress_event_types_unrecorded_events_total", labels) is None


def test_an_attribute_too_long_is_not_recorded(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [_event("t" * 2000), _event(source="s" * 2000), _event()])
    assert _counts(recorder.changes()) == {("t", "s", None, None): 1}


def _own(count: int, replica: str = "me", uid: str = "uid-1", type_: str = "t") -> Observed:
    return Observed(
        EventTypeKey("Broker", "ns", "default", type_, "s"), uid, count, 50_000, 90_000, {}, replica
    )


@pytest.mark.parametrize(
    ("before_load", "records", "expected"),
    [
        pytest.param(0, [_own(5)], 6, id="its-own-count-carried-on"),
        pytest.param(2, [_own(5)], 8, id="events-while-loading-added"),
        pytest.param(2, [_own(5, replica="other")], 3, id="another-replicas-not-taken"),
        pytest.param(2, [_own(5, uid="earlier")], 3, id="an-earlier-brokers-not-taken"),
    ],
)
def test_a_restarted_replica_takes_up_its_own_records(
    clock: Clock, before_load: int, records: list[Observed], expected: int
) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [_event()] * before_load)
    recorder.learn(records, take_up=True)
    recorder.record(ROUTE, [_event()])  # one after the restart
    assert _counts(recorder.changes()) == {("t", "s", None, None): expected}


def test_taken_up_records_keep_their_first_seen_and_are_not_rewritten_unchanged(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.learn([_own(5)], take_up=True)
    assert recorder.changes() == []  # Kafka has it already
    recorder.record(ROUTE, [_event()])
    [observed] = recorder.changes()
    assert (observed.count, observed.first_ms) == (6, 50_000)


def test_its_own_records_read_back_later_are_not_counted_again(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [_event()] * 3)
    written = recorder.changes()
    recorder.learn(written)  # the follower reads them back
    recorder.written(written)
    recorder.record(ROUTE, [_event()])
    assert _counts(recorder.changes()) == {("t", "s", None, None): 4}


def test_a_deleted_or_replaced_broker_drops_its_counts_and_names_its_records(clock: Clock) -> None:
    recorder = _recorder(clock)
    recorder.record(ROUTE, [_event("a"), _event("b")])
    recorder.written(recorder.changes())
    recorder.record(ROUTE, [_event("c")])  # counted, never written: no record to remove
    key_a = record_key(EventTypeKey("Broker", "ns", "default", "a", "s"), "me")
    key_b = record_key(EventTypeKey("Broker", "ns", "default", "b", "s"), "me")
    assert recorder.set_routes([ROUTE], UIDS) == []  # unchanged: kept
    assert recorder.set_routes([], UIDS) == []  # not Ready for a while, not deleted: kept
    assert recorder.set_routes([ROUTE], UIDS) == []
    recorder.record(ROUTE, [_event("a")])
    assert _counts(recorder.changes())[("a", "s", None, None)] == 2  # counted on
    assert sorted(recorder.set_routes([ROUTE], {("Broker", "ns", "default"): "uid-2"})) == sorted(
        [key_a, key_b]
    )
    recorder.record(ROUTE, [_event("a")])
    [fresh] = recorder.changes()
    assert (fresh.uid, fresh.count) == ("uid-2", 1)  # the new Broker starts from nothing
    assert recorder.set_routes([], {}) == []  # its record was never written


def test_channels_are_named_by_their_kind(clock: Clock) -> None:
    route = Route("channel", "ns", "orders", "c.topic")
    recorder = EventTypeRecorder(10, "me", clock)
    recorder.set_routes([route], {("KafkaChannel", "ns", "orders"): "k"})
    recorder.record(route, [_event()])
    [observed] = recorder.changes()
    assert observed.key.kind == "KafkaChannel" and observed.uid == "k"


def test_uids_and_stale_keys() -> None:
    documents = {
        "Broker/ns/default": {"metadata": {"uid": "u1"}},
        "Channel/ns/c": {"metadata": {"uid": "u2"}},
        "Trigger/ns/t": {"metadata": {"uid": "u3"}},
    }
    uids = uids_of(documents)
    assert uids == {("Broker", "ns", "default"): "u1", ("Channel", "ns", "c"): "u2"}
    live = Observed(EventTypeKey("Broker", "ns", "default", "t", "s"), "u1", 1, 1, 1, {}, "a")
    earlier = Observed(EventTypeKey("Broker", "ns", "default", "t", "s"), "u0", 1, 1, 1, {}, "b")
    gone = Observed(EventTypeKey("Broker", "ns", "gone", "t", "s"), "u9", 1, 1, 1, {}, "a")
    records = {"live": live, "earlier": earlier, "gone": gone}
    assert stale_keys(records, uids) == ["earlier", "gone"]
    assert eventtype_name(live.key) == eventtype_name(earlier.key)
