"""EventType (eventing.knative.dev/v1beta3): the event types seen flowing through a Broker or Channel.

Kanal discovers them rather than being told: each ingress counts, per Broker or Channel, the
distinct (type, source, dataschema, datacontenttype) of the events it stores, and writes its
counts to a compacted topic (`eventtypes_topic`), one record per EventType and ingress replica,
keyed ``Kind/namespace/name/EVENTTYPE/REPLICA``. Everything here is pure: the EventType's name,
the record's key and JSON value, reading a record back (anything malformed or oversized is left
out), and the merge of every replica's record into one EventType as `kanal get eventtypes`
shows it: counts summed, first seen the earliest, last seen the latest, the example event's
attributes from the replica that saw the type last.

The resource keeps Knative's v1beta3 shape, where type, source, schema and content type are
entries of `spec.attributes` and `spec.reference` names the Broker or Channel; what Kanal
observed (count, first and last seen, an example event's attributes, never its data) is in
`status`, as a controller keeps what it observes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "API_VERSION",
    "EXAMPLE_MAX_ATTRIBUTES",
    "EXAMPLE_MAX_CHARS",
    "KIND",
    "MAX_FIELD_CHARS",
    "MAX_RECORD_BYTES",
    "EventTypeKey",
    "Observed",
    "decode_record",
    "encode_record",
    "eventtype_name",
    "eventtypes_topic",
    "example_of",
    "merge",
    "observed_from",
    "record_key",
    "reference_prefix",
]

API_VERSION: Final = "eventing.knative.dev/v1beta3"
KIND: Final = "EventType"
# An attribute longer than this (type, source, dataschema, datacontenttype) is not recorded: the
# record must stay small, and a real type or source is far shorter.
MAX_FIELD_CHARS: Final = 1024
# The example event: at most this many attributes, each value cut to this many characters.
EXAMPLE_MAX_ATTRIBUTES: Final = 32
EXAMPLE_MAX_CHARS: Final = 256
# A record read back that is larger than this is not Kanal's and is left out.
MAX_RECORD_BYTES: Final = 32 * 1024
_API_VERSIONS: Final = {
    "Broker": "eventing.knative.dev/v1",
    "Channel": "messaging.knative.dev/v1",
    "KafkaChannel": "messaging.knative.dev/v1beta1",
}
_NOT_NAME = re.compile(r"[^a-z0-9-]+")


def eventtypes_topic(resources_topic: str) -> str:
    """The compacted topic of one Kanal installation's EventType records: beside its resource log,
    so installations sharing a Kafka never see (or clean up) each other's."""
    return f"{resources_topic}.eventtypes"


@dataclass(frozen=True, slots=True)
class EventTypeKey:
    """What makes an EventType: its Broker or Channel and the four attributes it is told by."""

    kind: str  # Broker, Channel or KafkaChannel
    namespace: str
    name: str  # of the Broker or Channel
    type: str
    source: str
    schema: str | None = None
    content_type: str | None = None


def eventtype_name(key: EventTypeKey) -> str:
    """A valid, stable Kubernetes name: `et-<Broker or Channel>-<hash of everything in the key>`,
    at most 63 characters (so also a DNS label), the same in every process."""
    identity = "\n".join(
        (key.kind, key.namespace, key.name, key.type, key.source, key.schema or "", key.content_type or "")
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    readable = _NOT_NAME.sub("-", key.name.lower()).strip("-")[:40].strip("-")
    return f"et-{readable}-{digest}" if readable else f"et-{digest}"


def reference_prefix(kind: str, namespace: str, name: str) -> str:
    """The start of the key of every record of one Broker's or Channel's EventTypes."""
    return f"{kind}/{namespace}/{name}/"


def record_key(key: EventTypeKey, replica: str) -> str:
    return f"{reference_prefix(key.kind, key.namespace, key.name)}{eventtype_name(key)}/{replica}"


@dataclass(frozen=True, slots=True)
class Observed:
    """One replica's counts of one EventType."""

    key: EventTypeKey
    uid: str  # of the Broker or Channel, so a new one of the same name starts empty
    count: int
    first_ms: int
    last_ms: int
    example: Mapping[str, str] = field(default_factory=dict)
    replica: str = ""


def example_of(attributes: Mapping[str, str]) -> dict[str, str]:
    """An event's attributes as an example: never its data, bounded in number and length."""
    names = sorted(attributes)[:EXAMPLE_MAX_ATTRIBUTES]
    return {name: attributes[name][:EXAMPLE_MAX_CHARS] for name in names}


def encode_record(observed: Observed) -> bytes:
    key = observed.key
    value = {
        "kind": key.kind,
        "namespace": key.namespace,
        "name": key.name,
        "uid": observed.uid,
        "type": key.type,
        "source": key.source,
        "schema": key.schema,
        "contentType": key.content_type,
        "replica": observed.replica,
        "count": observed.count,
        "firstSeen": observed.first_ms,
        "lastSeen": observed.last_ms,
        "example": dict(observed.example),
    }
    return json.dumps(value, separators=(",", ":")).encode()


def _text(value: object, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, str) and len(value) <= MAX_FIELD_CHARS and (optional or value != "")


def decode_record(value: bytes | None) -> Observed | None:
    """A record's value as read back, or None for a tombstone or anything not well-formed."""
    if value is None or len(value) > MAX_RECORD_BYTES:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    return observed_from(doc)


def observed_from(doc: object) -> Observed | None:
    """A record's value already parsed from JSON, or None if it is not well-formed."""
    if not isinstance(doc, dict):
        return None
    strings = ("kind", "namespace", "name", "type", "source")
    if not all(_text(doc.get(name)) for name in strings):
        return None
    if doc["kind"] not in _API_VERSIONS:
        return None
    if not (_text(doc.get("schema"), True) and _text(doc.get("contentType"), True)):
        return None
    if not all(isinstance(doc.get(name), str) for name in ("uid", "replica")):
        return None
    numbers = [doc.get(name) for name in ("count", "firstSeen", "lastSeen")]
    if not all(type(n) is int and n >= 0 for n in numbers):
        return None
    example = doc.get("example")
    if not isinstance(example, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in example.items()
    ):
        example = {}
    return Observed(
        EventTypeKey(
            doc["kind"], doc["namespace"], doc["name"], doc["type"], doc["source"],
            doc.get("schema"), doc.get("contentType"),
        ),
        doc["uid"],
        doc["count"],
        doc["firstSeen"],
        doc["lastSeen"],
        example_of(example),
        doc["replica"],
    )  # fmt: skip


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def merge(
    records: Iterable[Observed], uids: Mapping[tuple[str, str, str], str] | None = None
) -> list[dict[str, Any]]:
    """The EventType documents of every replica's records, sorted by namespace and name: counts
    summed, first seen the earliest, last seen the latest, the example from the latest. With
    `uids` ((kind, namespace, name) of each Broker and Channel that exists -> its uid), records
    of any other Broker or Channel, or of an earlier one of the same name, are left out."""
    found: dict[tuple[str, str], list[Observed]] = {}
    for record in records:
        key = record.key
        if uids is not None and uids.get((key.kind, key.namespace, key.name)) != record.uid:
            continue
        found.setdefault((key.namespace, eventtype_name(key)), []).append(record)
    return [_document(name, group) for (_, name), group in sorted(found.items())]


def _document(name: str, group: list[Observed]) -> dict[str, Any]:
    key = group[0].key
    latest = max(group, key=lambda r: r.last_ms)
    attributes = [
        {"name": "type", "required": True, "value": key.type},
        {"name": "source", "required": True, "value": key.source},
    ]
    if key.schema is not None:
        attributes.append({"name": "dataschema", "required": False, "value": key.schema})
    if key.content_type is not None:
        attributes.append({"name": "datacontenttype", "required": False, "value": key.content_type})
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": key.namespace,
            "labels": {"eventing.knative.dev/referenceName": key.name},
        },
        "spec": {
            "reference": {"apiVersion": _API_VERSIONS[key.kind], "kind": key.kind, "name": key.name},
            "description": f"Seen by Kanal on {key.kind} {key.namespace}/{key.name}",
            "attributes": attributes,
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Observed"}],
            "count": sum(r.count for r in group),
            "firstSeen": _rfc3339(min(r.first_ms for r in group)),
            "lastSeen": _rfc3339(latest.last_ms),
            "replicas": len(group),
            "example": dict(latest.example),
        },
    }
