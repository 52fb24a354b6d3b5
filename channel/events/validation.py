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


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


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


def validate_attributes(attributes: Mapping[str, str], problems: list[Problem], prefix: str = "") -> None:
    """Append a Problem for each way `attributes` breaks the core spec."""
    for name in REQUIRED_ATTRIBUTES:
        if not attributes.get(name):
            problems.append(Problem(prefix + name, "is required and must not be empty"))
    version = attributes.get("specversion")
    if version and version not in SPEC_VERSIONS:
        problems.append(Problem(prefix + "specversion", f"{version!r} is not supported (1.0 or 0.3)"))
    for name, value in attributes.items():
        path = prefix + name
        if not valid_name(name):
            problems.append(Problem(path, "attribute names are lower-case letters a-z and digits 0-9 only"))
            continue
        validate_string(name, value, path, problems)
        if name == "source" and value and not _URI_REF.fullmatch(value):
            problems.append(Problem(path, "must be a URI-reference"))
        elif name == "time" and not _valid_time(value):
            problems.append(Problem(path, "must be an RFC 3339 timestamp"))
        elif name in ("dataschema", "schemaurl") and not _ABSOLUTE_URI.fullmatch(value):
            problems.append(Problem(path, "must be a non-empty absolute URI"))
        elif name == "subject" and not value:
            problems.append(Problem(path, "must not be empty when present"))
        elif name == "datacontenttype" and not _MEDIA_TYPE.fullmatch(value):
            problems.append(Problem(path, "must be a media type such as application/json"))
        elif name == PARTITION_KEY and not value:
            problems.append(Problem(path, "must not be empty when present"))
