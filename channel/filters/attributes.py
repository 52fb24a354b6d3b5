"""How filters read a CloudEvent's context attributes by name (requirement FLT-13).

Filters see the event as ``Attributes``: canonical string values keyed by lower-case name,
the required attributes always present, extensions alongside. Most names are read as they
are. Two follow Knative's lookup rules: ``datamediatype`` is the media type of
``datacontenttype`` without its parameters, and ``dataschema`` and ``schemaurl`` (its
CloudEvents 0.3 name) read each other. ``time`` is compared as the string received (D-05).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["ATTRIBUTE_NAME", "Attributes", "Getter", "getter_for", "lookup"]

Attributes = Mapping[str, str]
"""An event's context attributes: lower-case names to canonical string values."""

Getter = Callable[[Attributes], "str | None"]
"""Reads one attribute of an event; ``None`` when the event does not have it."""

ATTRIBUTE_NAME: Final = re.compile(r"[a-z][a-z0-9]*")
"""What a filter key must look like (FLT-12; ``fullmatch`` it)."""


def _data_media_type(attributes: Attributes) -> str | None:
    content_type = attributes.get("datacontenttype")
    if content_type is None or ";" not in content_type:
        return content_type
    return content_type.split(";", 1)[0].strip()


def _data_schema(attributes: Attributes) -> str | None:
    value = attributes.get("dataschema")
    return attributes.get("schemaurl") if value is None else value


def _schema_url(attributes: Attributes) -> str | None:
    value = attributes.get("schemaurl")
    return attributes.get("dataschema") if value is None else value


_DERIVED: Final[dict[str, Getter]] = {
    "datamediatype": _data_media_type,
    "dataschema": _data_schema,
    "schemaurl": _schema_url,
}


def getter_for(name: str) -> Getter | None:
    """The reader for a name that is not a plain lookup, or ``None`` for a plain one."""
    return _DERIVED.get(name)


def lookup(attributes: Attributes, name: str) -> str | None:
    """The value a filter sees for attribute ``name``, or ``None`` if the event lacks it."""
    derived = _DERIVED.get(name)
    return attributes.get(name) if derived is None else derived(attributes)
