"""Validation of context attributes against the CloudEvents core spec, collecting every problem.

Cheap for the common case (short ASCII values): most checks are a `str` method or one compiled
regex. Attribute names are `[a-z0-9]+` of any length (20 characters is only a SHOULD, and
Knative's own `knativekafkapartition` has 21).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from channel.errors import Problem
from channel.events.model import PARTITION_KEY, REQUIRED_ATTRIBUTES, SPEC_VERSIONS

__all__ = ["valid_name", "validate_attributes", "validate_string"]

_NAME = re.compile(r"[a-z0-9]+")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
# RFC 3986 characters (unreserved, reserved, and '%' for escapes): anything else, such as a
# space, makes the value not a URI-reference.
_URI_REF = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+\-]+/[A-Za-z0-9!#$&^_.+\-]+\s*(;.*)?", re.DOTALL)
# Control characters, and the Unicode noncharacters and surrogates a String must not contain.
_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff\ud800-\udfff]")


# Names seen valid before (the same few dozen recur in every event), bounded in size.
_VALID_NAMES: set[str] = set(REQUIRED_ATTRIBUTES)
_VALID_NAMES_MAX = 4096


def valid_name(name: str) -> bool:
    if name in _VALID_NAMES:
        return True
    if _NAME.fullmatch(name) is None:
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)
    return True


def validate_string(name: str, value: str, path: str, problems: list[Problem]) -> None:
    if (not value.isascii() or not value.isprintable()) and (
        _BAD_CHARS.search(value) or _has_plane_noncharacter(value)
    ):
        problems.append(Problem(path, "contains a control character or a Unicode noncharacter"))


def _has_plane_noncharacter(value: str) -> bool:
    return any((ord(c) & 0xFFFE) == 0xFFFE for c in value if ord(c) > 0xFFFF)


def _valid_time(value: str) -> bool:
    if not _RFC3339.fullmatch(value):
        return False
    month, day = int(value[5:7]), int(value[8:10])
    hour, minute, second = int(value[11:13]), int(value[14:16]), int(value[17:19])
    return 1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60


def _source(value: str) -> str | None:
    return "must be a URI-reference" if value and not _URI_REF.fullmatch(value) else None


def _time(value: str) -> str | None:
    return None if _valid_time(value) else "must be an RFC 3339 timestamp"


def _absolute_uri(value: str) -> str | None:
    return None if _ABSOLUTE_URI.fullmatch(value) else "must be a non-empty absolute URI"


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty when present"


def _media_type(value: str) -> str | None:
    return None if _MEDIA_TYPE.fullmatch(value) else "must be a media type such as application/json"


# The attributes with a format of their own; the problem it finds, or None.
_CHECKS = {
    "source": _source,
    "time": _time,
    "dataschema": _absolute_uri,
    "schemaurl": _absolute_uri,
    "subject": _not_empty,
    "datacontenttype": _media_type,
    PARTITION_KEY: _not_empty,
}


# (name, value) pairs of printable ASCII that passed their format check: a source sends the same
# source, content type and schema in every event, so the same few recur. Bounded: emptied when full.
_PASSED: set[tuple[str, str]] = set()
_PASSED_MAX = 4096


def validate_attributes(attributes: Mapping[str, str], problems: list[Problem], prefix: str = "") -> None:
    """Append a Problem for each way `attributes` breaks the core spec."""
    for name in REQUIRED_ATTRIBUTES:
        if not attributes.get(name):
            problems.append(Problem(prefix + name, "is required and must not be empty"))
    version = attributes.get("specversion")
    if version and version not in SPEC_VERSIONS:
        problems.append(Problem(prefix + "specversion", f"{version!r} is not supported (1.0 or 0.3)"))
    for name, value in attributes.items():
        if name not in _VALID_NAMES and not valid_name(name):
            problems.append(
                Problem(prefix + name, "attribute names are lower-case letters a-z and digits 0-9 only")
            )
            continue
        check = _CHECKS.get(name)
        if check is not None and (name, value) in _PASSED:
            continue  # passed both checks below before
        plain = value.isascii() and value.isprintable()  # else validate_string may find something
        if not plain:
            validate_string(name, value, prefix + name, problems)
        if check is None:
            continue
        message = check(value)
        if message is not None:
            problems.append(Problem(prefix + name, message))
        elif plain and len(value) <= 256:  # long values are rarely repeated
            if len(_PASSED) >= _PASSED_MAX:
                _PASSED.clear()
            _PASSED.add((name, value))
