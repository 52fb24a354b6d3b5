"""The CloudEvent value Kanal passes around, the Kafka record it is stored as, and the wire words.

An event is its context attributes in their canonical string form (Integer `42`, Boolean
`true`) plus its data bytes, or None when it has no data. That is exactly what the Kafka binding
stores (headers are strings, the value is bytes), so an event read back from Kafka is identical
to the one accepted, and nothing needs re-serialising on the way through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "BATCH_CONTENT_TYPE",
    "CE_HTTP_PREFIX",
    "CE_KAFKA_PREFIX",
    "CORE_ATTRIBUTES",
    "JSON_CONTENT_TYPE",
    "PARTITION_KEY",
    "REQUIRED_ATTRIBUTES",
    "SPEC_VERSIONS",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
    "KafkaRecord",
    "is_json_media_type",
]

CE_HTTP_PREFIX: Final = "ce-"
CE_KAFKA_PREFIX: Final = "ce_"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"
JSON_CONTENT_TYPE: Final = "application/json"
PARTITION_KEY: Final = "partitionkey"
REQUIRED_ATTRIBUTES: Final = ("id", "source", "specversion", "type")
CORE_ATTRIBUTES: Final = frozenset(
    {
        "id",
        "source",
        "specversion",
        "type",
        "datacontenttype",
        "dataschema",
        "subject",
        "time",
        # CloudEvents 0.3 names, kept as sent for 0.3 events
        "schemaurl",
        "datacontentencoding",
    }
)
SPEC_VERSIONS: Final = ("1.0", "0.3")


def is_json_media_type(content_type: str | None) -> bool:
    """True for no content type, `*/json` and `*/*+json` (the JSON format's rule for `data`)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


@dataclass(slots=True)
class CloudEvent:
    """Context attributes (canonical strings, lower-case names) and data (None: no data).

    Treated as a value and never changed once made. Not a frozen dataclass: its `__init__` sets
    each field through `object.__setattr__`, four times the cost of a plain one, and two of
    these are made per event on the ingress's hot path."""

    attributes: Mapping[str, str]
    data: bytes | None = None
    # The Kafka binding's headers for `attributes`, sorted by name, when the parser that made the
    # event had the values as UTF-8 bytes already (binary-mode HTTP): `to_kafka_record` copies
    # them instead of encoding every value again. Not part of the value: never compared or shown.
    kafka_headers: list[tuple[str, bytes]] | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.attributes.get("id", "")

    @property
    def source(self) -> str:
        return self.attributes.get("source", "")

    @property
    def type(self) -> str:
        return self.attributes.get("type", "")

    @property
    def specversion(self) -> str:
        return self.attributes.get("specversion", "")

    @property
    def datacontenttype(self) -> str | None:
        return self.attributes.get("datacontenttype")

    @property
    def partitionkey(self) -> str | None:
        return self.attributes.get(PARTITION_KEY)


@dataclass(slots=True)
class KafkaRecord:
    """A Kafka record in the CloudEvents Kafka binding. `headers` may be appended to before sending;
    not frozen, for the reason given at CloudEvent."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
