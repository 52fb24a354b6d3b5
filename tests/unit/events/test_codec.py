"""The CloudEvents codec against the spec's own test statements (CEH-*, KAF-*, D-13, D-16)."""

from __future__ import annotations

import base64
import json

import pytest

from channel.errors import InvalidEvent, UnsupportedMediaType
from channel.events import (
    CloudEvent,
    from_kafka_record,
    parse_http_request,
    parse_http_response,
    to_http_binary,
    to_kafka_record,
    to_structured_json,
)

REQUIRED = [(b"ce-id", b"1"), (b"ce-specversion", b"1.0"), (b"ce-type", b"t"), (b"ce-source", b"s")]
STRUCTURED = [(b"content-type", b"application/cloudevents+json")]


def binary(*extra: tuple[bytes, bytes], body: bytes = b"") -> CloudEvent:
    [event] = parse_http_request([*REQUIRED, *extra], body)
    return event


def structured(obj: object) -> CloudEvent:
    [event] = parse_http_request(STRUCTURED, json.dumps(obj).encode())
    return event


def problems(headers: list[tuple[bytes, bytes]], body: bytes) -> set[str]:
    with pytest.raises(InvalidEvent) as info:
        parse_http_request(headers, body)
    return {p.path for p in info.value.problems}


BASE = {"specversion": "1.0", "id": "1", "source": "s", "type": "t"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(b"Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀", id="utf8-percent"),
        pytest.param(b"%c3%a9", "é", id="lower-case-hex"),
        pytest.param(b'"hello world"', "hello world", id="quoted"),
        pytest.param(b"100%25", "100%", id="percent-sign"),
        pytest.param(b"plain", "plain", id="plain"),
    ],
)
def test_header_percent_decoding(header: bytes, expected: str) -> None:
    assert binary((b"ce-subject", header)).attributes["subject"] == expected


@pytest.mark.parametrize(
    ("headers", "body", "path"),
    [
        pytest.param([(b"ce-specversion", b"1.0")], b"", "id", id="missing-required"),
        pytest.param([*REQUIRED, (b"ce-subject", b"%C0%A0")], b"", "subject", id="overlong-utf8"),
        pytest.param([*REQUIRED, (b"ce-subject", b"a%01b")], b"", "subject", id="control-char"),
        pytest.param([*REQUIRED, (b"ce-my-ext", b"x")], b"", "my-ext", id="bad-name"),
        pytest.param([*REQUIRED, (b"ce-id", b"2")], b"", "id", id="duplicate"),
        pytest.param(
            [*REQUIRED[:1], (b"ce-specversion", b"19.0"), *REQUIRED[2:]],
            b"",
            "specversion",
            id="unknown-version",
        ),
        pytest.param([*REQUIRED, (b"ce-time", b"yesterday")], b"", "time", id="bad-time"),
        pytest.param([*REQUIRED[:3], (b"ce-source", b"http://exa mple.com")], b"", "source", id="bad-source"),
        pytest.param([*REQUIRED, (b"ce-partitionkey", b"")], b"", "partitionkey", id="empty-partitionkey"),
        pytest.param([*REQUIRED, (b"ce-subject", b"")], b"", "subject", id="empty-subject"),
    ],
)
def test_binary_mode_problems(headers: list[tuple[bytes, bytes]], body: bytes, path: str) -> None:
    assert path in problems(headers, body)


def test_every_problem_is_reported_at_once() -> None:
    assert problems([(b"ce-specversion", b"1.0"), (b"ce-time", b"x")], b"") >= {
        "id",
        "source",
        "type",
        "time",
    }


def test_header_names_are_case_insensitive_and_content_type_is_datacontenttype() -> None:
    [event] = parse_http_request(
        [
            (b"CE-ID", b"1"),
            (b"Ce-Source", b"s"),
            (b"ce-TYPE", b"t"),
            (b"Ce-Specversion", b"1.0"),
            (b"Content-Type", b"application/xml"),
        ],
        b"<a/>",
    )
    assert event.attributes == {
        "id": "1",
        "source": "s",
        "type": "t",
        "specversion": "1.0",
        "datacontenttype": "application/xml",
    }
    headers, body = to_http_binary(event)
    assert ("Content-Type", "application/xml") in headers
    assert not any(k.lower() == "ce-datacontenttype" for k, _ in headers)
    assert body == b"<a/>"


def test_long_attribute_names_are_accepted() -> None:
    assert binary((b"ce-averyveryverylongname1", b"x")).attributes["averyveryverylongname1"] == "x"


def test_source_may_be_any_uri_reference() -> None:
    [event] = parse_http_request([*REQUIRED[:3], (b"ce-source", b"1-555-123-4567")], b"")
    assert event.source == "1-555-123-4567"


def test_spec_version_03_is_kept() -> None:
    [event] = parse_http_request([*REQUIRED[:1], (b"ce-specversion", b"0.3"), *REQUIRED[2:]], b"")
    assert event.specversion == "0.3"


@pytest.mark.parametrize(
    ("content_type", "mode_error"),
    [
        (b"Application/CloudEvents+JSON; charset=UTF-8", None),
        (b"application/cloudevents+avro", UnsupportedMediaType),
        (b"application/cloudevents-batch+avro", UnsupportedMediaType),
    ],
)
def test_mode_detection(content_type: bytes, mode_error: type[Exception] | None) -> None:
    body = json.dumps(BASE).encode()
    if mode_error is None:
        assert parse_http_request([(b"content-type", content_type)], body)[0].id == "1"
    else:
        with pytest.raises(mode_error):
            parse_http_request([(b"content-type", content_type)], body)


def test_batch_is_checked_before_structured() -> None:
    events = parse_http_request(
        [(b"content-type", b"application/cloudevents-batch+json")],
        json.dumps([BASE, {**BASE, "id": "2"}]).encode(),
    )
    assert [e.id for e in events] == ["1", "2"]
    assert parse_http_request([(b"content-type", b"application/cloudevents-batch+json")], b"[]") == []


def test_batch_rejected_whole_naming_the_index() -> None:
    body = json.dumps([BASE, {**BASE, "source": None}, {**BASE, "specversion": "0.3"}]).encode()
    paths = problems([(b"content-type", b"application/cloudevents-batch+json")], body)
    assert "[1].source" in paths
    assert "specversion" in paths  # mixed versions in one batch


@pytest.mark.parametrize(
    ("obj", "attribute", "expected"),
    [
        pytest.param({**BASE, "subject": None}, "subject", None, id="null-is-absent"),
        pytest.param({**BASE, "exint": 42}, "exint", "42", id="integer"),
        pytest.param({**BASE, "exbool": True}, "exbool", "true", id="boolean"),
        pytest.param(
            {**BASE, "data": {"a": 1}}, "datacontenttype", "application/json", id="d16-json-default"
        ),
        pytest.param(
            {**BASE, "data_base64": "AAEC/w=="}, "datacontenttype", None, id="base64-no-json-default"
        ),
    ],
)
def test_structured_attributes(obj: dict[str, object], attribute: str, expected: str | None) -> None:
    assert structured(obj).attributes.get(attribute) == expected


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        pytest.param({**BASE, "id": None}, "id", id="null-required"),
        pytest.param({**BASE, "myext": 1.5}, "myext", id="float"),
        pytest.param({**BASE, "big": 2147483648}, "big", id="int-overflow"),
        pytest.param({**BASE, "myext": {"a": 1}}, "myext", id="nested"),
        pytest.param({**BASE, "myExt": "x"}, "myExt", id="upper-case-name"),
        pytest.param({**BASE, "data": 1, "data_base64": "AA=="}, "data", id="data-and-base64"),
        pytest.param({**BASE, "data_base64": "***"}, "data_base64", id="bad-base64"),
        pytest.param({**BASE, "dataschema": ""}, "dataschema", id="empty-dataschema"),
        pytest.param({**BASE, "subject": "a\u0001b"}, "subject", id="control-char"),
    ],
)
def test_structured_problems(obj: dict[str, object], path: str) -> None:
    assert path in problems(STRUCTURED, json.dumps(obj).encode())


@pytest.mark.parametrize(
    ("obj", "body"),
    [
        pytest.param(
            {**BASE, "datacontenttype": "application/xml", "data": '<much wow="xml"/>'},
            b'<much wow="xml"/>',
            id="xml-string",
        ),
        pytest.param(
            {**BASE, "datacontenttype": "application/json", "data": "hi"}, b'"hi"', id="json-string"
        ),
        pytest.param(
            {**BASE, "data_base64": "AAEC/w==", "datacontenttype": "application/octet-stream"},
            b"\x00\x01\x02\xff",
            id="base64",
        ),
        pytest.param({**BASE, "data": None}, b"null", id="explicit-null"),
    ],
)
def test_structured_data_becomes_binary_body(obj: dict[str, object], body: bytes) -> None:
    assert structured(obj).data == body


def test_structured_body_wins_over_headers() -> None:
    [event] = parse_http_request(
        [*STRUCTURED, (b"ce-type", b"b")], json.dumps({**BASE, "type": "a"}).encode()
    )
    assert event.type == "a"


def test_percent_encoding_on_delivery() -> None:
    headers, _ = to_http_binary(structured({**BASE, "subject": "a b%é"}))
    assert ("ce-subject", "a%20b%25%C3%A9") in headers


def test_kafka_record_binary_mode() -> None:
    event = binary(
        (b"ce-subject", b"Euro%20%E2%82%AC"),
        (b"ce-partitionkey", b"order-17"),
        (b"content-type", b"application/json"),
        body=b'{"k":1}',
    )
    record = to_kafka_record(event)
    headers = dict(record.headers)
    assert headers["ce_subject"] == "Euro €".encode()
    assert headers["content-type"] == b"application/json"
    assert "ce_datacontenttype" not in headers
    assert record.key == b"order-17" and headers["ce_partitionkey"] == b"order-17"
    assert record.value == b'{"k":1}'
    assert from_kafka_record(record.key, record.value, record.headers) == event


def test_event_without_data_is_a_null_record() -> None:
    record = to_kafka_record(binary())
    assert record.value is None and record.key is None
    event = from_kafka_record(None, None, record.headers)
    assert event.data is None
    headers, body = to_http_binary(event)
    assert body == b"" and not any(k == "Content-Type" for k, _ in headers)


def test_same_record_whatever_the_input_mode() -> None:
    from_binary = binary((b"content-type", b"application/json"), (b"ce-exint", b"42"), body=b'{"a":1}')
    from_structured = structured(
        {**BASE, "exint": 42, "datacontenttype": "application/json", "data": {"a": 1}}
    )
    assert to_kafka_record(from_binary) == to_kafka_record(from_structured)


def test_structured_records_are_read() -> None:
    value = json.dumps({**BASE, "data": {"x": 1}}).encode()
    event = from_kafka_record(None, value, [("content-type", b"application/cloudevents+json")])
    assert event.id == "1" and event.data == b'{"x":1}'


@pytest.mark.parametrize(
    "content_type", [b"Application/CloudEvents+JSON", b"APPLICATION/CLOUDEVENTS+JSON; charset=utf-8"]
)
def test_a_records_mode_is_read_from_its_content_type_whatever_the_case(content_type: bytes) -> None:
    """KAF-05."""
    value = json.dumps({**BASE, "data": {"x": 1}}).encode()
    event = from_kafka_record(None, value, [("Content-Type", content_type)])
    assert event.id == "1" and event.data == b'{"x":1}'


@pytest.mark.parametrize(
    "media_type", ["APPLICATION/JSON", "Application/Json; CharSet=UTF-8", "text/X-Thing+JSON"]
)
def test_json_media_types_are_recognised_whatever_the_case(media_type: str) -> None:
    """CEH-06: a structured event's object data is JSON text under any spelling of a JSON type,
    and the datacontenttype is kept as sent."""
    event = structured({**BASE, "datacontenttype": media_type, "data": {"a": 1}})
    assert event.data == b'{"a":1}' and event.datacontenttype == media_type


def test_an_invalid_datacontenttype_is_refused() -> None:
    """CEH-02: a media type, as RFC 2046 says."""
    with pytest.raises(InvalidEvent) as info:
        parse_http_request([*REQUIRED, (b"content-type", b"not a media type")], b"x")
    assert [p.path for p in info.value.problems] == ["datacontenttype"]


def test_non_cloudevent_records_are_rejected() -> None:
    with pytest.raises(InvalidEvent):
        from_kafka_record(None, b"hello", [])


def test_hop_header_is_not_an_attribute() -> None:
    record = to_kafka_record(binary())
    event = from_kafka_record(None, None, [*record.headers, ("kanal-hops", b"3")])
    assert "kanal-hops" not in event.attributes and "hops" not in event.attributes


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        pytest.param(
            {"content-type": "application/json"}, b'{"ok":true}', None, id="plain-json-is-not-a-reply"
        ),
        pytest.param(
            {"ce-id": "r", "ce-specversion": "1.0", "ce-type": "t", "ce-source": "s"},
            b"",
            "r",
            id="binary-reply",
        ),
        pytest.param(
            {"content-type": "application/cloudevents+json"},
            json.dumps({**BASE, "id": "r2"}).encode(),
            "r2",
            id="structured-reply",
        ),
    ],
)
def test_response_as_reply(headers: dict[str, str], body: bytes, expected: str | None) -> None:
    reply = parse_http_response(200, headers, body)
    assert (reply.id if reply else None) == expected


def test_malformed_reply_is_an_error() -> None:
    with pytest.raises(InvalidEvent):
        parse_http_response(200, {"ce-specversion": "1.0"}, b"")


@pytest.mark.parametrize(
    ("data", "content_type", "member", "expected"),
    [
        # JSON data: its own bytes, whatever their form.
        (b'{"b": 1,   "a": [1.0, 1e2, 12345678901234567890]}', "application/json", "data", None),
        (b'"just a string"\n', "application/json", "data", None),
        (b"  42 ", "application/vnd.api+json", "data", None),
        # Not strict UTF-8 JSON under a JSON type: base64, never a broken document.
        (b'{"x": NaN}', "application/json", "data_base64", b'{"x": NaN}'),
        (b"{not json", "application/json", "data_base64", b"{not json"),
        (b'"\xff"', "application/json", "data_base64", b'"\xff"'),
        (b"caf\xc3\xa9", "text/plain", "data", "café"),
        (b"\x00\x01", "application/octet-stream", "data_base64", b"\x00\x01"),
    ],
)
def test_structured_json_keeps_the_data_as_sent(
    data: bytes, content_type: str, member: str, expected: object
) -> None:
    event = CloudEvent(
        {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "datacontenttype": content_type}, data
    )
    body = to_structured_json(event)
    parsed = json.loads(body)  # always one valid JSON document
    assert parsed["id"] == "1" and parsed["datacontenttype"] == content_type
    if member == "data" and expected is None:
        assert body.endswith(b',"data":' + data + b"}")
        assert parsed["data"] == json.loads(data)
    elif member == "data":
        assert parsed["data"] == expected
    else:
        assert base64.b64decode(parsed["data_base64"]) == expected
