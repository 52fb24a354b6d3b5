"""The CloudEvents Python SDK as an oracle for Kanal's codec: on every valid event they agree.

Both directions, in each mode: what Kanal writes (HTTP binary and structured, the Kafka binding)
the SDK reads as the same attributes and data, and what the SDK writes Kanal reads as the same.
Events are drawn by hypothesis (derandomized, a bounded number of examples) with extensions,
unusual but valid attribute values (spaces, `%`, quotes, non-ASCII, astral characters) and data
of JSON, text and binary content types.

Where they disagree the spec decides (../shared/SPEC-REQUIREMENTS.md), and every case where the
SDK is the one that is wrong is left out of the draws narrowly and pinned by a test of its own
below (`test_sdk_deviation_*`), so that when the SDK changes, the exclusion is seen to be stale:
- the SDK's v1 event invents a `time` when none is given, so a decoded event has one the sender
  never set; an event without `time` is compared without it;
- the SDK keeps `time` as a Python datetime: no leap second (`:60`), no more than microseconds;
  Kanal passes the text through, so those values are drawn only for Kanal's own round trips;
- the SDK writes a Boolean extension in binary mode (HTTP headers, Kafka headers) as Python's
  `True`, where the canonical string is `true` (CEH-05); Booleans are drawn for structured mode;
- the SDK matches JSON media types case-sensitively and only under `application/` and `text/`
  (`Application/JSON`, `image/x+json` are not JSON to it; CEH-06, CEH-21 say they are), and in
  binary mode writes JSON data that is not an object with `str()`; such content types and data
  are not drawn for the SDK's encodings;
- the SDK writes no data as an empty Kafka value, which Kanal reads as empty data (its own
  records carry a null value): the two are compared as equal.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from channel.events import (
    CloudEvent,
    from_kafka_record,
    is_json_media_type,
    parse_http_request,
    to_http_binary,
    to_kafka_record,
    to_structured_json,
)

FORMAT = JSONFormat()
# Fast and the same on every run (CI): a fixed sequence of examples, a bounded number of them.
ORACLE = settings(max_examples=150, deadline=None, derandomize=True, database=None)

# -- drawing valid events ---------------------------------------------------------------------

CORE = {"id", "source", "type", "specversion", "datacontenttype", "dataschema", "subject", "time"}
# Names with a meaning of their own: CloudEvents 0.3's, the partitioning extension's (never empty,
# drawn apart), and `data`, which is reserved.
RESERVED = CORE | {"schemaurl", "datacontentencoding", "partitionkey", "data"}
extension_names = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=22).filter(
    lambda name: name not in RESERVED
)
# A String: any Unicode but control characters, surrogates and noncharacters (CEH-05); private
# use and unassigned code points are left out as well, as the codec's other property tests do.
UNUSUAL = ["a b", "100%", "%41", '"quoted"', " lead and trail ", "a b%é", "Euro € 😀", "x=1;y=2", "ä"]
strings = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co")), min_size=1, max_size=30),
    st.sampled_from(UNUSUAL),
)
sources = st.sampled_from(
    [
        "https://example.com/src?x=1#f",
        "/relative/path",
        "urn:uuid:6e8bc430-9c3a",
        "1-555-123-4567",
        "mailto:a@b.c",
    ]
)
schemas = st.sampled_from(["https://example.com/schema.json", "urn:example:schema", "ftp://h/s"])
zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(hours=-12)),
        timezone(timedelta(hours=14)),
    ]
)
# Times both can hold: whole seconds 0-59, at most microseconds (see the module's docstring).
times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)

# JSON media types Kanal and the SDK both know as JSON, and others both know are not.
JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/vnd.kanal+json",
    "text/json",
]
TEXT_TYPES = ["text/plain", "text/plain; charset=utf-8", "text/xml", "text/csv"]
BINARY_TYPES = ["application/octet-stream", "image/png", "application/vnd.apache.thrift.binary"]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(strings, json_values, max_size=4)


def rfc3339(moment: datetime) -> str:
    """`moment` as an RFC 3339 timestamp, the form a sender would write (Z for UTC)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@st.composite
def kanal_events(draw: st.DrawFn) -> CloudEvent:
    """A valid CloudEvents 1.0 event as Kanal holds it: canonical strings and data bytes."""
    attributes = {
        "specversion": "1.0",
        "id": draw(strings),
        "source": draw(sources),
        "type": draw(strings),
    }
    if draw(st.booleans()):
        attributes["subject"] = draw(strings)
    if draw(st.booleans()):
        attributes["time"] = rfc3339(draw(times))
    if draw(st.booleans()):
        attributes["dataschema"] = draw(schemas)
    if draw(st.booleans()):
        attributes["partitionkey"] = draw(strings)
    attributes.update(draw(st.dictionaries(extension_names, strings, max_size=4)))
    kind = draw(st.sampled_from(["json", "text", "binary", "untyped", "none"]))
    data: bytes | None
    if kind == "json":
        attributes["datacontenttype"] = draw(st.sampled_from(JSON_TYPES))
        data = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans())).encode()
    elif kind == "text":
        attributes["datacontenttype"] = draw(st.sampled_from(TEXT_TYPES))
        data = draw(strings).encode()
    elif kind == "binary":
        attributes["datacontenttype"] = draw(st.sampled_from(BINARY_TYPES))
        data = draw(st.binary(min_size=1, max_size=64))
    elif kind == "untyped":  # data without a datacontenttype: opaque bytes (CEH-23)
        data = draw(st.binary(min_size=1, max_size=64))
    else:
        if draw(st.booleans()):
            attributes["datacontenttype"] = draw(st.sampled_from(JSON_TYPES + TEXT_TYPES))
        data = None
    return CloudEvent(attributes, data)


@st.composite
def sdk_events(draw: st.DrawFn, *, structured: bool) -> SdkEvent:
    """A valid event as the SDK holds it: typed values (time a datetime, Integer extensions, and
    Boolean ones for structured mode) and data as a JSON value (an object for binary mode), a
    string or bytes."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(strings),
        "source": draw(sources),
        "type": draw(strings),
        "time": draw(times),  # the SDK sets one anyway
    }
    if draw(st.booleans()):
        attributes["subject"] = draw(strings)
    if draw(st.booleans()):
        attributes["dataschema"] = draw(schemas)
    scalars = [strings, st.integers(-(2**31), 2**31 - 1)] + ([st.booleans()] if structured else [])
    json_data = json_values.filter(lambda v: v is not None) if structured else json_objects
    attributes.update(draw(st.dictionaries(extension_names, st.one_of(*scalars), max_size=4)))
    kind = draw(st.sampled_from(["json", "text", "binary", "untyped", "none"]))
    data: Any
    if kind == "json":
        attributes["datacontenttype"] = draw(st.sampled_from(JSON_TYPES))
        data = draw(json_data)
    elif kind == "text":
        attributes["datacontenttype"] = draw(st.sampled_from(TEXT_TYPES))
        data = draw(strings)
    elif kind == "binary":
        attributes["datacontenttype"] = draw(st.sampled_from(BINARY_TYPES))
        data = draw(st.binary(min_size=1, max_size=64))
    elif kind == "untyped":  # the SDK takes a missing datacontenttype as JSON
        data = draw(json_data)
    else:
        data = None
    return SdkEvent(attributes, data)


# -- what "the same" means ----------------------------------------------------------------------


def _canonical(name: str, value: Any) -> Any:
    """An attribute value as comparable: `time` as a datetime, the rest as canonical strings."""
    if name == "time":
        return value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _attributes(attributes: Any) -> dict[str, Any]:
    return {name: _canonical(name, value) for name, value in attributes.items() if value is not None}


_NOT_JSON = object()


def _json(data: bytes) -> Any:
    """`data` as a JSON value, or _NOT_JSON."""
    try:
        return json.loads(data.decode())
    except ValueError:
        return _NOT_JSON


def _sdk_json(content_type: str | None) -> bool:
    """Whether the SDK reads a binary-mode body of this type as JSON (no type: it assumes JSON)."""
    return content_type is None or FORMAT.JSON_CONTENT_TYPE_PATTERN.match(content_type) is not None


def _assert_sdk_read(kanal: CloudEvent, sdk: Any, *, structured: bool) -> None:
    """`sdk` (the SDK's decoding of what Kanal wrote for `kanal`) holds the same event."""
    decoded = _attributes(sdk.get_attributes())
    if "time" not in kanal.attributes:
        decoded.pop("time")  # invented by the SDK (module docstring)
    assert decoded == _attributes(kanal.attributes)
    content_type = kanal.datacontenttype
    data, value = kanal.data, sdk.get_data()
    if data is None:
        assert value is None
    elif structured and content_type is not None and is_json_media_type(content_type):
        assert value == json.loads(data)  # the `data` member: a JSON value
    elif structured and content_type is not None and content_type.startswith("text/"):
        assert value == data.decode()
    elif structured:
        assert value == data  # data_base64
    elif _sdk_json(content_type) and (parsed := _json(data)) is not _NOT_JSON:
        assert value == parsed  # binary mode: a JSON body (or one without a type) the SDK parsed
    elif isinstance(value, str):
        assert value.encode() == data  # the body as text, where it is UTF-8
    else:
        assert value == data


def _assert_kanal_read(sdk: SdkEvent, kanal: CloudEvent, *, structured: bool) -> None:
    """`kanal` (Kanal's decoding of what the SDK wrote for `sdk`) holds the same event."""
    expected = _attributes(sdk.get_attributes())
    value = sdk.get_data()
    if (
        structured
        and value is not None
        and not isinstance(value, bytes)
        and "datacontenttype" not in expected
    ):
        # The one attribute Kanal adds: a JSON-format `data` member's implied type (CEH-22).
        expected["datacontenttype"] = "application/json"
    assert _attributes(kanal.attributes) == expected
    data = kanal.data or None  # the SDK writes no data as an empty Kafka value
    if value is None:
        assert data is None
    elif isinstance(value, bytes):
        assert data == value
    elif isinstance(value, str) and not (structured and is_json_media_type(kanal.datacontenttype)):
        assert data == value.encode()
    else:
        assert data is not None and json.loads(data) == value


def _headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """HTTP headers as a server hands them to Kanal (names in any case, values as bytes)."""
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


# -- Kanal writes, the SDK reads -----------------------------------------------------------------


def _kanal_binary_http(event: CloudEvent) -> Any:
    headers, body = to_http_binary(event)
    return sdk_http.from_binary(sdk_http.HTTPMessage(headers=dict(headers), body=body), FORMAT)


def _kanal_structured_json(event: CloudEvent) -> Any:
    body = to_structured_json(event)
    message = sdk_http.HTTPMessage(headers={"content-type": "application/cloudevents+json"}, body=body)
    return sdk_http.from_structured(message, FORMAT)


def _kanal_kafka_record(event: CloudEvent) -> Any:
    record = to_kafka_record(event)
    message = sdk_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return sdk_kafka.from_binary(message, FORMAT)


@pytest.mark.parametrize(
    ("write_and_read", "structured"),
    [
        pytest.param(_kanal_binary_http, False, id="http-binary"),
        pytest.param(_kanal_structured_json, True, id="http-structured"),
        pytest.param(_kanal_kafka_record, False, id="kafka-binary"),
    ],
)
@ORACLE
@given(event=kanal_events())
def test_the_sdk_reads_what_kanal_writes(
    write_and_read: Callable[[CloudEvent], Any], structured: bool, event: CloudEvent
) -> None:
    _assert_sdk_read(event, write_and_read(event), structured=structured)


# -- the SDK writes, Kanal reads -----------------------------------------------------------------


def _read_http(message: Any) -> CloudEvent:
    (parsed,) = parse_http_request(_headers(message.headers), message.body)
    return parsed


def _read_kafka(message: Any) -> CloudEvent:
    key = message.key.encode() if isinstance(message.key, str) else message.key
    return from_kafka_record(key, message.value, list(message.headers.items()))


@pytest.mark.parametrize(
    ("write", "read", "structured"),
    [
        pytest.param(sdk_http.to_binary, _read_http, False, id="http-binary"),
        pytest.param(sdk_http.to_structured, _read_http, True, id="http-structured"),
        pytest.param(sdk_kafka.to_binary, _read_kafka, False, id="kafka-binary"),
        pytest.param(sdk_kafka.to_structured, _read_kafka, True, id="kafka-structured"),
    ],
)
@ORACLE
@given(data=st.data())
def test_kanal_reads_what_the_sdk_writes(
    write: Callable[[SdkEvent, JSONFormat], Any],
    read: Callable[[Any], CloudEvent],
    structured: bool,
    data: st.DataObject,
) -> None:
    event = data.draw(sdk_events(structured=structured))
    _assert_kanal_read(event, read(write(event, FORMAT)), structured=structured)


# -- where the SDK is wrong: pinned, so a change in the SDK is seen -------------------------------


def _event(**attributes: Any) -> SdkEvent:
    return SdkEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **attributes})


def test_sdk_deviation_a_decoded_event_gets_a_time_it_never_had() -> None:
    event = CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"})
    headers, body = to_http_binary(event)
    decoded = sdk_http.from_binary(sdk_http.HTTPMessage(headers=dict(headers), body=body), FORMAT)
    assert decoded.get_time() is not None
    assert "time" not in parse_http_request(_headers(dict(headers)), body)[0].attributes


@pytest.mark.parametrize(
    "time", ["2024-12-31T23:59:60Z", "2024-01-02T03:04:05.123456789Z"], ids=["leap-second", "nanoseconds"]
)
def test_sdk_deviation_times_a_datetime_cannot_hold(time: str) -> None:
    event = CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": time})
    headers, body = to_http_binary(event)
    assert parse_http_request(_headers(dict(headers)), body)[0].attributes["time"] == time  # as sent
    try:
        decoded = sdk_http.from_binary(sdk_http.HTTPMessage(headers=dict(headers), body=body), FORMAT)
    except ValueError:
        return  # the leap second: refused
    assert rfc3339(decoded.get_time()) != time  # the nanoseconds: cut to microseconds


def test_sdk_deviation_binary_mode_writes_booleans_as_python_does() -> None:
    message = sdk_http.to_binary(_event(flag=True), FORMAT)
    assert message.headers["ce-flag"] == "True"  # the canonical string is "true" (CEH-05)
    assert sdk_kafka.to_binary(_event(flag=True), FORMAT).headers["ce_flag"] == b"True"
    structured = sdk_http.to_structured(_event(flag=True), FORMAT)
    (parsed,) = parse_http_request(_headers(structured.headers), structured.body)
    assert parsed.attributes["flag"] == "true"  # structured mode is right


@pytest.mark.parametrize("content_type", ["Application/JSON", "image/x+json"])
def test_sdk_deviation_json_media_types(content_type: str) -> None:
    """Both are JSON (CEH-06: media types are case-insensitive; CEH-21: any */*+json), and Kanal
    takes them so; the SDK writes a dict's Python str() as a `data` string."""
    event = SdkEvent(_event(datacontenttype=content_type).get_attributes(), {"a": 1})
    assert json.loads(sdk_http.to_structured(event, FORMAT).body)["data"] == "{'a': 1}"
    assert is_json_media_type(content_type)


def test_sdk_deviation_binary_mode_writes_json_that_is_not_an_object_with_str() -> None:
    event = SdkEvent(_event(datacontenttype="application/json").get_attributes(), ["a", True])
    assert sdk_http.to_binary(event, FORMAT).body == b"['a', True]"  # not JSON


def test_kanal_structured_data_base64_round_trips_what_the_sdk_reads() -> None:
    """A fixed example beside the drawn ones: binary data under no content type is data_base64."""
    event = CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, b"\x00\xff")
    body = to_structured_json(event)
    assert json.loads(body)["data_base64"] == base64.b64encode(b"\x00\xff").decode()
    message = sdk_http.HTTPMessage({"content-type": "application/cloudevents+json"}, body)
    sdk = sdk_http.from_structured(message, FORMAT)
    assert sdk.get_data() == b"\x00\xff"
