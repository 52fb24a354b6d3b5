"""The CloudEvents HTTP binding: requests in (binary, structured, batched), deliveries out (binary).

The mode is decided by `Content-Type`, case-insensitively, checking the batch media type first
because it too starts with `application/cloudevents`. In binary mode every `ce-` header is an
attribute (names case-insensitive, values quoted and percent-decoded), `Content-Type` is
`datacontenttype`, and the body is the data byte for byte; an empty body is an event without
data. This is the ingress's hot path, so the binary case avoids regexes and copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from channel.errors import InvalidEvent, Problem, UnsupportedMediaType
from channel.events.jsonformat import event_from_json, events_from_batch, parse_json
from channel.events.kafka import kafka_header_name
from channel.events.model import CloudEvent
from channel.events.percent import decode_header_value, encode_header_value
from channel.events.validation import validate_attributes

__all__ = ["binary_problem", "carries_event", "parse_http_request", "parse_http_response", "to_http_binary"]

_CE = b"ce-"
_CONTENT_TYPE = b"content-type"
# What each header name seen stands for: a `ce-` header's attribute name and Kafka header, or
# None for any other header. The same few recur in every request. Bounded.
_NAMES: dict[bytes, tuple[str, str] | None] = {}
_NAMES_MAX = 4096


# The mode of each Content-Type value seen that is supported (a source sends the same one or two).
_MODES: dict[str, str] = {}
_MODES_MAX = 256


def _mode(content_type: str) -> str:
    mode = _MODES.get(content_type)
    if mode is None:
        mode = _media_mode(content_type)
        if len(_MODES) < _MODES_MAX:
            _MODES[content_type] = mode
    return mode


def _media_mode(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("application/cloudevents-batch"):
        if media != "application/cloudevents-batch+json":
            raise UnsupportedMediaType(
                f"batched format {media!r} is not supported; use application/cloudevents-batch+json"
            )
        return "batch"
    if media.startswith("application/cloudevents"):
        if media != "application/cloudevents+json":
            raise UnsupportedMediaType(
                f"structured format {media!r} is not supported; use application/cloudevents+json"
            )
        return "structured"
    return "binary"


def parse_http_request(
    headers: Sequence[tuple[bytes, bytes]], body: bytes, *, lowered: bool = False
) -> list[CloudEvent]:
    """The events an HTTP request carries (one, or a batch's many). Raises InvalidEvent listing every
    problem, or UnsupportedMediaType for a structured or batched format other than JSON.

    Header names are matched case-insensitively; `lowered` says they are lower-case already (as
    HTTP servers and ASGI hand them over), which saves lowering each on this hot path."""
    content_type: str | None = None
    for name, value in headers:
        if len(name) == 12 and (name if lowered else name.lower()) == _CONTENT_TYPE:
            content_type = value.decode("latin-1").strip()
            break
    mode = _mode(content_type) if content_type else "binary"
    if mode == "batch":
        return events_from_batch(body)
    if mode == "structured":
        problems: list[Problem] = []
        event = event_from_json(parse_json(body), problems)
        if event is None:
            raise InvalidEvent(problems)
        return [event]
    return [_binary(headers, body, content_type)]


def _binary(headers: Sequence[tuple[bytes, bytes]], body: bytes, content_type: str | None) -> CloudEvent:
    attributes: dict[str, str] = {}
    # The Kafka headers too, while each value is at hand as the UTF-8 bytes they store.
    stored: list[tuple[str, bytes]] = []
    problems: list[Problem] = []
    names = _NAMES
    for raw_name, raw_value in headers:
        try:
            known = names[raw_name]
        except KeyError:
            known = _attribute_of(raw_name)
        if known is None:
            continue
        name, header = known
        if name in attributes:
            problems.append(Problem(name, "appears more than once"))
            continue
        if name == "datacontenttype":
            problems.append(
                Problem(name, "binary mode carries it as Content-Type, never as ce-datacontenttype")
            )
            continue
        try:
            # Most values have nothing to unquote or percent-decode. (Checked on the text:
            # `b"%" in raw_value` costs CPython a TypeError raised and cleared inside.)
            value = raw_value.decode("utf-8")
            if "%" in value or value[:1] == '"':
                value = decode_header_value(raw_value)
                raw_value = value.encode("utf-8")
        except UnicodeDecodeError:
            problems.append(Problem(name, "is not valid UTF-8 after percent-decoding"))
            attributes[name] = ""
            continue
        attributes[name] = value
        stored.append((header, raw_value))
    if content_type:
        attributes["datacontenttype"] = content_type
        stored.append(("content-type", content_type.encode("utf-8")))
    validate_attributes(attributes, problems)
    if problems:
        raise InvalidEvent(problems)
    stored.sort()
    return CloudEvent(attributes, body if body else None, stored)


def _attribute_of(raw_name: bytes) -> tuple[str, str] | None:
    """The attribute and Kafka header a header name stands for (names case-insensitive), or None."""
    known = None
    if raw_name[:3].lower() == _CE:
        name = raw_name[3:].decode("latin-1").lower()
        known = (name, kafka_header_name(name))
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[raw_name] = known
    return known


def to_http_binary(event: CloudEvent) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of a binary-mode request carrying `event` (no ce-datacontenttype)."""
    headers: list[tuple[str, str]] = []
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            headers.append(("Content-Type", value))
        else:
            headers.append(("ce-" + name, encode_header_value(value)))
    return headers, event.data if event.data is not None else b""


def carries_event(headers: Sequence[tuple[str, str]] | Mapping[str, str]) -> bool:
    """Whether a response claims to carry a CloudEvent: a `ce-specversion` header (binary mode)
    or a CloudEvents content type (structured)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        lname = name.lower()
        if lname == "ce-specversion":
            return True
        if lname == "content-type" and value.lower().startswith("application/cloudevents"):
            return True
    return False


def binary_problem(event: CloudEvent) -> str | None:
    """Why binary mode cannot carry `event`, or None. Its `ce-` headers are percent-encoded, but
    `datacontenttype` is the Content-Type header as it is, and a header is Latin-1 text without
    line breaks; the JSON format carries any text."""
    value = event.attributes.get("datacontenttype")
    if value is None or (value.isascii() and value.isprintable()):
        return None
    if any(c in value for c in "\r\n\0"):
        return f"datacontenttype {value!r} has line breaks"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return f"datacontenttype {value!r} is not Latin-1 text"
    return None


def parse_http_response(
    status: int, headers: Sequence[tuple[str, str]] | Mapping[str, str], body: bytes
) -> CloudEvent | None:
    """The CloudEvent a response carries, None if it does not claim to carry one, or InvalidEvent
    if it claims to and is not valid. Whether the status makes it a reply is the caller's call."""
    if not carries_event(headers):
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    raw = [(k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape")) for k, v in pairs]
    try:
        events = parse_http_request(raw, body)
    except UnsupportedMediaType as exc:
        raise InvalidEvent([Problem("", str(exc))]) from None
    if len(events) != 1:
        raise InvalidEvent([Problem("", "a reply must be exactly one event, not a batch")])
    return events[0]
