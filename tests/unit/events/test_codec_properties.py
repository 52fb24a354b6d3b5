"""Property tests: arbitrary input never crashes the codec; valid events round-trip byte-exact."""

from __future__ import annotations

import contextlib
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from channel.errors import InvalidEvent, UnsupportedMediaType
from channel.events import (
    CloudEvent,
    from_kafka_record,
    parse_http_request,
    to_http_binary,
    to_kafka_record,
)

names = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=25).filter(
    lambda n: (
        n
        not in {
            "id",
            "source",
            "type",
            "specversion",
            "datacontenttype",
            "time",
            "dataschema",
            "schemaurl",
            "subject",
            "partitionkey",
        }
    )
)
# Strings the spec allows: no control characters, noncharacters or surrogates.
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cn", "Co")), min_size=1, max_size=40
)


@st.composite
def events(draw: st.DrawFn) -> CloudEvent:
    attributes = {
        "id": draw(values),
        "source": "https://example.com/src",
        "type": draw(values),
        "specversion": draw(st.sampled_from(["1.0", "0.3"])),
    }
    attributes.update(draw(st.dictionaries(names, values, max_size=5)))
    if draw(st.booleans()):
        attributes["datacontenttype"] = draw(
            st.sampled_from(["application/json", "application/octet-stream", "text/plain; charset=utf-8"])
        )
    data = draw(st.one_of(st.none(), st.binary(min_size=1, max_size=200)))
    return CloudEvent(attributes, data)


@settings(max_examples=300, deadline=None)
@given(events())
def test_binary_http_round_trip(event: CloudEvent) -> None:
    headers, body = to_http_binary(event)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    assert parse_http_request(raw, body) == [event]


@settings(max_examples=300, deadline=None)
@given(events())
def test_kafka_round_trip(event: CloudEvent) -> None:
    record = to_kafka_record(event)
    assert from_kafka_record(record.key, record.value, record.headers) == event


@settings(max_examples=300, deadline=None)
@given(events(), st.booleans())
def test_binary_http_record_is_the_record_of_the_event(event: CloudEvent, mixed_case: bool) -> None:
    """The Kafka headers binary-mode parsing keeps from the request's bytes are exactly those
    `to_kafka_record` makes from the attributes (the structured and batched modes' path)."""
    headers, body = to_http_binary(event)
    raw = [
        ((k.upper() if mixed_case else k.lower()).encode("latin-1"), v.encode("latin-1")) for k, v in headers
    ]
    (parsed,) = parse_http_request(raw, body)
    assert parsed.kafka_headers is not None
    assert to_kafka_record(parsed) == to_kafka_record(CloudEvent(dict(event.attributes), event.data))


header_names = st.one_of(
    st.sampled_from(
        [b"ce-id", b"ce-source", b"ce-type", b"ce-specversion", b"content-type", b"ce-subject", b"ce-time"]
    ),
    st.binary(max_size=20),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(header_names, st.binary(max_size=40)), max_size=8), st.binary(max_size=200))
def test_arbitrary_requests_never_crash(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    with contextlib.suppress(InvalidEvent, UnsupportedMediaType):
        parse_http_request(headers, body)


json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_bodies, st.sampled_from([b"application/cloudevents+json", b"application/cloudevents-batch+json"]))
def test_arbitrary_json_never_crashes(body: object, content_type: bytes) -> None:
    import json

    with contextlib.suppress(InvalidEvent, UnsupportedMediaType):
        parse_http_request([(b"content-type", content_type)], json.dumps(body).encode())
