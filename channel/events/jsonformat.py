"""The CloudEvents JSON format: reading structured and batched events, writing structured ones.

Reading turns every member into its canonical string (JSON booleans `true`/`false`, integral
numbers in 32-bit range as decimal text); a `null` member means the attribute is absent. `data`
under a JSON content type (or none) becomes that JSON value's compact text (`json.dumps` with no
spaces: Kanal keeps the value, not the sender's whitespace); a string `data` under another
content type becomes its UTF-8 bytes; `data_base64` is decoded. A structured event with `data`
and no `datacontenttype` gets `application/json`, the one addition the JSON format sanctions.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from channel.errors import InvalidEvent, Problem
from channel.events.model import JSON_CONTENT_TYPE, CloudEvent, is_json_media_type
from channel.events.validation import validate_attributes

__all__ = ["event_from_json", "events_from_batch", "parse_json", "to_structured_json"]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent([Problem("", f"body is not valid JSON: {exc}")]) from None


def event_from_json(obj: Any, problems: list[Problem], prefix: str = "") -> CloudEvent | None:
    """One event from a decoded JSON object; problems are appended (None if there were any)."""
    if not isinstance(obj, dict):
        problems.append(Problem(prefix.rstrip(".") or "", "a CloudEvent must be a JSON object"))
        return None
    before = len(problems)
    attributes: dict[str, str] = {}
    for name, value in obj.items():
        if name in ("data", "data_base64"):
            continue
        if value is None:
            continue  # null means absent
        if isinstance(value, bool):
            attributes[name] = "true" if value else "false"
        elif isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                problems.append(Problem(prefix + name, "Integer out of the 32-bit range"))
            attributes[name] = str(value)
        elif isinstance(value, float):
            if value.is_integer() and _INT_MIN <= value <= _INT_MAX:
                attributes[name] = str(int(value))
            else:
                problems.append(Problem(prefix + name, "a number attribute must be a 32-bit integer"))
        elif isinstance(value, str):
            attributes[name] = value
        else:
            problems.append(Problem(prefix + name, "an attribute value must be a string, number or boolean"))
    data: bytes | None = None
    has_data = "data" in obj
    if has_data and obj.get("data_base64") is not None:
        problems.append(Problem(prefix + "data", "data and data_base64 must not both be present"))
    elif obj.get("data_base64") is not None:
        encoded = obj["data_base64"]
        try:
            if not isinstance(encoded, str):
                raise ValueError("not a string")
            data = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            problems.append(Problem(prefix + "data_base64", "must be base64 text"))
    elif has_data:
        value = obj["data"]
        content_type = attributes.get("datacontenttype")
        if is_json_media_type(content_type):
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
            if content_type is None:
                attributes["datacontenttype"] = JSON_CONTENT_TYPE
        elif isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
        else:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    validate_attributes(attributes, problems, prefix)
    if len(problems) > before:
        return None
    return CloudEvent(attributes, data)


def events_from_batch(body: bytes) -> list[CloudEvent]:
    """A batch: a JSON array of events, all valid and of one specversion, or InvalidEvent."""
    array = parse_json(body)
    if not isinstance(array, list):
        raise InvalidEvent([Problem("", "a batch must be a JSON array of events")])
    problems: list[Problem] = []
    events = [event_from_json(item, problems, f"[{i}].") for i, item in enumerate(array)]
    versions = {e.specversion for e in events if e is not None}
    if len(versions) > 1:
        problems.append(
            Problem(
                "specversion", f"all events of a batch must share one specversion, got {sorted(versions)}"
            )
        )
    if problems:
        raise InvalidEvent(problems)
    return [e for e in events if e is not None]


def to_structured_json(event: CloudEvent) -> bytes:
    """The event in the JSON format. JSON data goes in `data` as its own text, byte for byte (a
    value re-serialised could change: number forms, key order, whitespace); text data as a
    string; anything else, or data that is not strict UTF-8 JSON, as `data_base64`."""
    obj: dict[str, Any] = dict(event.attributes)
    raw: str | None = None
    if event.data is not None:
        content_type = event.attributes.get("datacontenttype")
        if content_type is not None and is_json_media_type(content_type):
            raw = _strict_json_text(event.data)
            if raw is None:
                obj["data_base64"] = base64.b64encode(event.data).decode()
        elif content_type is not None and content_type.lower().startswith("text/"):
            try:
                obj["data"] = event.data.decode("utf-8")
            except UnicodeDecodeError:
                obj["data_base64"] = base64.b64encode(event.data).decode()
        else:
            obj["data_base64"] = base64.b64encode(event.data).decode()
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if raw is not None:
        text = f'{text[:-1]},"data":{raw}}}'  # the attributes object is never empty
    return text.encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json_text(data: bytes) -> str | None:
    """`data` as text if it is one JSON value in UTF-8 (no NaN or Infinity), else None."""
    try:
        text = data.decode("utf-8")
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return text
