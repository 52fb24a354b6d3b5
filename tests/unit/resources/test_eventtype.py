"""EventType naming, records and the merge of every replica's records (pure)."""

from __future__ import annotations

import json
import re

import pytest

from channel.resources.eventtype import (
    EXAMPLE_MAX_ATTRIBUTES,
    EXAMPLE_MAX_CHARS,
    MAX_FIELD_CHARS,
    EventTypeKey,
    Observed,
    decode_record,
    encode_record,
    eventtype_name,
    eventtypes_topic,
    example_of,
    merge,
    record_key,
)

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

KEY = EventTypeKey("Broker", "default", "default", "com.example.order", "/shop")


def _observed(key: EventTypeKey = KEY, **fields: object) -> Observed:
    values: dict[str, object] = {
        "uid": "u1",
        "count": 1,
        "first_ms": 1_000,
        "last_ms": 2_000,
        "example": {"type": key.type},
        "replica": "a",
    }
    values.update(fields)
    return Observed(key, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(KEY, id="plain"),
        pytest.param(EventTypeKey("Broker", "ns", "My_Broker.v2", "t", "s"), id="name-not-a-label"),
        pytest.param(EventTypeKey("Channel", "ns", "x" * 253, "t", "s"), id="longest-name"),
        pytest.param(EventTypeKey("Broker", "ns", "---", "t", "s"), id="nothing-readable"),
        pytest.param(
            EventTypeKey("Broker", "ns", "b", "t" * 1000, "s" * 1000, "h", "c"), id="long-attributes"
        ),
    ],
)
def test_names_are_dns_labels_and_stable(key: EventTypeKey) -> None:
    name = eventtype_name(key)
    assert len(name) <= 63 and _DNS_LABEL.match(name), name
    assert name.startswith("et-")
    assert eventtype_name(EventTypeKey(*[getattr(key, f) for f in key.__slots__])) == name


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(EventTypeKey("Channel", "default", "default", KEY.type, KEY.source), id="kind"),
        pytest.param(EventTypeKey("Broker", "other", "default", KEY.type, KEY.source), id="namespace"),
        pytest.param(EventTypeKey("Broker", "default", "other", KEY.type, KEY.source), id="broker"),
        pytest.param(EventTypeKey("Broker", "default", "default", "x", KEY.source), id="type"),
        pytest.param(EventTypeKey("Broker", "default", "default", KEY.type, "/other"), id="source"),
        pytest.param(EventTypeKey("Broker", "default", "default", KEY.type, KEY.source, "s"), id="schema"),
        pytest.param(
            EventTypeKey("Broker", "default", "default", KEY.type, KEY.source, None, "text/plain"),
            id="content",
        ),
        # The fields are separated: moving a character from one to the next is another name.
        pytest.param(EventTypeKey("Broker", "default", "default", KEY.type + "/", "shop"), id="boundary"),
    ],
)
def test_every_part_of_the_key_changes_the_name(other: EventTypeKey) -> None:
    assert eventtype_name(other) != eventtype_name(KEY)


def test_record_key_and_topic() -> None:
    assert record_key(KEY, "host:8080") == f"Broker/default/default/{eventtype_name(KEY)}/host:8080"
    assert eventtypes_topic("kanal.resources") == "kanal.resources.eventtypes"


def test_a_record_reads_back_as_written() -> None:
    observed = _observed(EventTypeKey("Channel", "ns", "c", "t", "s", "https://schema", "application/json"))
    assert decode_record(encode_record(observed)) == observed


def _value(**changes: object) -> bytes:
    doc = json.loads(encode_record(_observed()))
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="tombstone"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1]", id="not-an-object"),
        pytest.param(b"x" * 40_000, id="oversized"),
        pytest.param(_value(count=-1), id="negative-count"),
        pytest.param(_value(count=1.5), id="float-count"),
        pytest.param(_value(count=True), id="bool-count"),
        pytest.param(_value(firstSeen="yesterday"), id="time-not-a-number"),
        pytest.param(_value(type=""), id="empty-type"),
        pytest.param(_value(source=None), id="no-source"),
        pytest.param(_value(type="t" * (MAX_FIELD_CHARS + 1)), id="type-too-long"),
        pytest.param(_value(kind="Trigger"), id="not-a-broker-or-channel"),
        pytest.param(_value(schema=5), id="schema-not-a-string"),
        pytest.param(_value(uid=None), id="no-uid"),
    ],
)
def test_malformed_records_are_left_out(value: bytes | None) -> None:
    assert decode_record(value) is None


def test_a_malformed_example_is_dropped_not_the_record() -> None:
    record = decode_record(_value(example={"a": 1}))
    assert record is not None and record.example == {}


def test_the_example_is_bounded() -> None:
    attributes = {f"ext{i:03d}": "v" * 1000 for i in range(100)}
    example = example_of(attributes)
    assert len(example) == EXAMPLE_MAX_ATTRIBUTES
    assert all(len(v) == EXAMPLE_MAX_CHARS for v in example.values())


OTHER = EventTypeKey("Broker", "default", "default", "com.example.refund", "/shop")


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param(
            [_observed(count=3, first_ms=1_000, last_ms=5_000)],
            [(KEY, 3, "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:05.000Z", 1)],
            id="one-replica",
        ),
        pytest.param(
            [
                _observed(count=3, first_ms=2_000, last_ms=9_000, replica="a"),
                _observed(count=4, first_ms=1_000, last_ms=3_000, replica="b"),
            ],
            [(KEY, 7, "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:09.000Z", 2)],
            id="replicas-summed-first-min-last-max",
        ),
        pytest.param(
            [_observed(count=2), _observed(OTHER, count=5)],
            sorted(
                [
                    (KEY, 2, "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z", 1),
                    (OTHER, 5, "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z", 1),
                ],
                key=lambda row: eventtype_name(row[0]),
            ),
            id="two-types",
        ),
        pytest.param(
            [_observed(count=2), _observed(count=5, uid="old", replica="b")],
            [(KEY, 2, "1970-01-01T00:00:01.000Z", "1970-01-01T00:00:02.000Z", 1)],
            id="an-earlier-broker-of-that-name-left-out",
        ),
        pytest.param(
            [_observed(EventTypeKey("Broker", "default", "gone", "t", "s"))],
            [],
            id="a-deleted-broker-left-out",
        ),
    ],
)
def test_merge(records: list[Observed], expected: list[tuple[EventTypeKey, int, str, str, int]]) -> None:
    docs = merge(records, {("Broker", "default", "default"): "u1"})
    got = [
        (
            {a["name"]: a["value"] for a in d["spec"]["attributes"]},
            d["status"]["count"],
            d["status"]["firstSeen"],
            d["status"]["lastSeen"],
            d["status"]["replicas"],
        )
        for d in docs
    ]
    assert got == [({"type": k.type, "source": k.source}, n, f, last, r) for k, n, f, last, r in expected]


def test_a_merged_document_is_a_knative_eventtype() -> None:
    key = EventTypeKey("Broker", "ns", "default", "t", "s", "https://example.com/s.json", "application/json")
    [doc] = merge(
        [
            _observed(key, example={"type": "t", "id": "old"}, last_ms=1_000),
            _observed(key, example={"type": "t", "id": "new"}, last_ms=2_000, replica="b"),
        ]
    )
    assert doc["apiVersion"] == "eventing.knative.dev/v1beta3" and doc["kind"] == "EventType"
    assert doc["metadata"]["name"] == eventtype_name(key)
    assert doc["spec"]["reference"] == {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "name": "default",
    }
    assert doc["spec"]["attributes"] == [
        {"name": "type", "required": True, "value": "t"},
        {"name": "source", "required": True, "value": "s"},
        {"name": "dataschema", "required": False, "value": "https://example.com/s.json"},
        {"name": "datacontenttype", "required": False, "value": "application/json"},
    ]
    assert doc["status"]["example"] == {"type": "t", "id": "new"}  # the latest replica's
