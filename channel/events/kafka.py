"""The CloudEvents Kafka binding: events are written in binary mode, read in either mode.

Binary mode: the value is the data as is (None for an event without data, so event topics must
never be compacted), `content-type` is `datacontenttype`, and every other attribute is a header
`ce_<name>` holding the canonical UTF-8 string (not percent-encoded). The record key is the
`partitionkey` extension, which stays a header too. Headers without the `ce_` prefix are not
the event's (Kanal uses one for its reply hop count) and are ignored when reading.
"""

from __future__ import annotations

from collections.abc import Sequence

from channel.errors import InvalidEvent, Problem
from channel.events.jsonformat import event_from_json, parse_json
from channel.events.model import PARTITION_KEY, CloudEvent, KafkaRecord
from channel.events.validation import validate_attributes

__all__ = ["from_kafka_record", "kafka_header_name", "to_kafka_record"]


# The header of each attribute name seen (names are few and recur in every event).
_HEADER_NAMES: dict[str, str] = {"datacontenttype": "content-type"}
_HEADER_NAMES_MAX = 4096


def kafka_header_name(attribute: str) -> str:
    """`ce_<attribute>`, or `content-type` for datacontenttype."""
    header = _HEADER_NAMES.get(attribute)
    if header is None:
        header = "ce_" + attribute
        if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
            _HEADER_NAMES[attribute] = header
    return header


def to_kafka_record(event: CloudEvent) -> KafkaRecord:
    """The record for `event`: the same whatever mode it arrived in (headers sorted by name)."""
    attributes = event.attributes
    headers = event.kafka_headers
    if headers is None:
        names = _HEADER_NAMES
        headers = []
        for name, value in attributes.items():
            header = names.get(name) or kafka_header_name(name)
            headers.append((header, value.encode("utf-8", "surrogatepass")))
        headers.sort()
    else:
        headers = headers.copy()  # the record's may be appended to
    key = attributes.get(PARTITION_KEY)
    return KafkaRecord(key.encode() if key is not None else None, event.data, headers)


def from_kafka_record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> CloudEvent:
    """The event a record carries, in binary or structured mode; InvalidEvent if it carries none."""
    attributes: dict[str, str] = {}
    content_type: str | None = None
    problems: list[Problem] = []
    for name, raw in headers or ():
        lname = name.lower()
        if lname == "content-type":
            content_type = raw.decode("utf-8", "replace")
        elif lname.startswith("ce_"):
            try:
                attributes[lname[3:]] = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(Problem(lname[3:], "header is not UTF-8"))
    if content_type is not None and content_type.lower().startswith("application/cloudevents"):
        if value is None:
            raise InvalidEvent([Problem("", "a structured record must have a value")])
        event = event_from_json(parse_json(value), problems)
        if event is None:
            raise InvalidEvent(problems)
        return event
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    validate_attributes(attributes, problems)
    if problems:
        raise InvalidEvent(problems)
    return CloudEvent(attributes, value)
