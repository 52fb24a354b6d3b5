"""Event discovery at the ingress: counting which event types each Broker and Channel carries.

`EventTypeRecorder` counts, in memory, the events the ingress has stored per Broker or Channel
and (type, source, dataschema, datacontenttype). It sits on the hot path, so an event of a known
kind costs four dict lookups and an increment: the counts are nested dicts keyed by the
attributes' own strings, so no key object is made per event, and no clock is read per event
(the last-seen time is that of the write that first has the grown count, see
`ingress.eventtype_log`). A new kind costs a hash and a small example (its attributes, never
its data). At most `ingress_event_types_max` kinds are recorded per Broker or Channel, counting
those other replicas recorded; events of further kinds are stored and delivered as always, only
not recorded, and `kanal_ingress_event_types_unrecorded_events` counts them (`..._at_cap` is 1
meanwhile). Pure, apart from those metrics: no I/O and no await; `ingress.eventtype_log` reads
and writes Kafka for it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import Counter, Gauge

from channel.events import CloudEvent
from channel.resources.eventtype import (
    MAX_FIELD_CHARS,
    EventTypeKey,
    Observed,
    eventtype_name,
    example_of,
    record_key,
)
from ingress.routing import Route

__all__ = [
    "AT_CAP",
    "UNRECORDED",
    "EventTypeRecorder",
    "Reference",
    "Uids",
    "reference_of",
    "stale_keys",
    "uids_of",
]

log = logging.getLogger(__name__)

_KINDS: Final = ("Broker", "Channel", "KafkaChannel")

UNRECORDED = Counter(
    "kanal_ingress_event_types_unrecorded_events",
    "Events stored but not recorded as an EventType: their Broker or Channel has "
    "ingress_event_types_max kinds already (or an attribute is over 1024 characters)",
    ["kind", "namespace", "name"],
)
AT_CAP = Gauge(
    "kanal_ingress_event_types_at_cap",
    "1 while a Broker or Channel has as many EventTypes as ingress_event_types_max allows",
    ["kind", "namespace", "name"],
)

Uids = dict[tuple[str, str, str], str]


@dataclass(frozen=True, slots=True)
class Reference:
    """A Broker or Channel as its EventTypes name it."""

    kind: str
    namespace: str
    name: str
    uid: str


class _Entry:
    __slots__ = ("count", "example", "first_ms", "key", "last_ms", "written")

    def __init__(self, key: EventTypeKey, first_ms: int, example: Mapping[str, str]) -> None:
        self.key = key
        self.count = 0
        self.written = 0  # the count last written
        self.first_ms = first_ms
        self.last_ms = first_ms
        self.example = example


class _Kinds:
    """One Broker's or Channel's recorded kinds: type -> source -> schema -> content type."""

    __slots__ = ("at_cap", "known", "ref", "tree")

    def __init__(self, ref: Reference) -> None:
        self.ref = ref
        self.tree: dict[str, dict[str, dict[str | None, dict[str | None, _Entry]]]] = {}
        self.known: set[str] = set()  # EventType names recorded here or by other replicas
        self.at_cap = False


class EventTypeRecorder:
    """The in-memory counts of one ingress process (see the module docstring)."""

    def __init__(self, cap: int, replica: str, clock: Callable[[], float] = time.time) -> None:
        self.cap = cap
        self.replica = replica
        self._clock = clock
        self._by_topic: dict[str, _Kinds] = {}

    def set_routes(self, routes: Iterable[Route], uids: Mapping[tuple[str, str, str], str]) -> list[str]:
        """Follow the routing table: start empty for a Broker or Channel newly routed, and keep
        the counts of those that still exist with the same uid (routed or not: one that is not
        Ready for a while keeps its EventTypes). Returns the keys of the records this process
        wrote for those dropped: deleted, or replaced by a new one of the same name."""
        kept: dict[str, _Kinds] = {
            topic: kinds
            for topic, kinds in self._by_topic.items()
            if uids.get((kinds.ref.kind, kinds.ref.namespace, kinds.ref.name)) == kinds.ref.uid
        }
        for route in routes:
            ref = _reference(route, uids)
            if ref is not None and (route.topic not in kept or kept[route.topic].ref != ref):
                kept[route.topic] = _Kinds(ref)
        retained = {id(kinds) for kinds in kept.values()}
        dropped = [kinds for kinds in self._by_topic.values() if id(kinds) not in retained]
        self._by_topic = kept
        for kinds in dropped:  # their series go too (a new one of the name starts from nothing)
            for family in (UNRECORDED, AT_CAP):
                with contextlib.suppress(KeyError):
                    family.remove(kinds.ref.kind, kinds.ref.namespace, kinds.ref.name)
        return [
            record_key(entry.key, self.replica)
            for kinds in dropped
            for entry in _entries(kinds)
            if entry.written
        ]

    def record(self, route: Route, events: Sequence[CloudEvent]) -> None:
        """Count `events`, just stored for `route` (the hot path: see the module docstring)."""
        kinds = self._by_topic.get(route.topic)
        if kinds is None:
            return
        tree = kinds.tree
        for event in events:
            attributes = event.attributes
            entry = None
            by_source = tree.get(attributes["type"])
            if by_source is not None:
                by_schema = by_source.get(attributes["source"])
                if by_schema is not None:
                    by_content = by_schema.get(attributes.get("dataschema"))
                    if by_content is not None:
                        entry = by_content.get(attributes.get("datacontenttype"))
            if entry is None:
                entry = self._new(kinds, attributes)
                if entry is None:
                    continue
            entry.count += 1

    def _new(self, kinds: _Kinds, attributes: Mapping[str, str]) -> _Entry | None:
        ref = kinds.ref
        key = EventTypeKey(
            ref.kind,
            ref.namespace,
            ref.name,
            attributes["type"],
            attributes["source"],
            attributes.get("dataschema"),
            attributes.get("datacontenttype"),
        )
        name = eventtype_name(key)
        fields = (key.type, key.source, key.schema or "", key.content_type or "")
        if any(len(value) > MAX_FIELD_CHARS for value in fields) or (
            name not in kinds.known and len(kinds.known) >= self.cap
        ):
            UNRECORDED.labels(ref.kind, ref.namespace, ref.name).inc()
            if not kinds.at_cap and len(kinds.known) >= self.cap:
                kinds.at_cap = True
                AT_CAP.labels(ref.kind, ref.namespace, ref.name).set(1)
                log.warning(
                    "%s %s/%s has %d event types, the most ingress_event_types_max allows: "
                    "further types are delivered but not recorded",
                    ref.kind,
                    ref.namespace,
                    ref.name,
                    self.cap,
                )
            return None
        entry = _Entry(key, int(self._clock() * 1000), example_of(attributes))
        kinds.known.add(name)
        _insert(kinds, key, entry)
        return entry

    def learn(self, records: Iterable[Observed], take_up: bool = False) -> None:
        """Records read from the topic: their kinds count against the cap. With `take_up` (once,
        before this process writes), this replica's own records, written before a restart, are
        taken up: their counts are carried on."""
        by_ref = {(k.ref.kind, k.ref.namespace, k.ref.name, k.ref.uid): k for k in self._by_topic.values()}
        for record in records:
            key = record.key
            kinds = by_ref.get((key.kind, key.namespace, key.name, record.uid))
            if kinds is None:
                continue
            kinds.known.add(eventtype_name(key))
            if not take_up or record.replica != self.replica:
                continue
            entry = _find(kinds, key)
            if entry is None:
                entry = _Entry(key, record.first_ms, record.example)
                _insert(kinds, key, entry)
            entry.count += record.count
            entry.written = record.count
            entry.first_ms = min(entry.first_ms, record.first_ms)
            entry.last_ms = max(entry.last_ms, record.last_ms)

    def changes(self) -> list[Observed]:
        """The counts that grew since they were last written, as records (last seen: now);
        `written` marks them done once Kafka has them."""
        now_ms = int(self._clock() * 1000)
        out = []
        for kinds in self._by_topic.values():
            for entry in _entries(kinds):
                if entry.count != entry.written:
                    entry.last_ms = max(now_ms, entry.first_ms)
                    out.append(
                        Observed(
                            entry.key,
                            kinds.ref.uid,
                            entry.count,
                            entry.first_ms,
                            entry.last_ms,
                            entry.example,
                            self.replica,
                        )
                    )
        return out

    def written(self, records: Iterable[Observed]) -> None:
        by_ref = {(k.ref.kind, k.ref.namespace, k.ref.name, k.ref.uid): k for k in self._by_topic.values()}
        for record in records:
            kinds = by_ref.get((record.key.kind, record.key.namespace, record.key.name, record.uid))
            entry = None if kinds is None else _find(kinds, record.key)
            if entry is not None:
                entry.written = max(entry.written, record.count)


def _reference(route: Route, uids: Mapping[tuple[str, str, str], str]) -> Reference | None:
    kinds = ("Broker",) if route.kind == "broker" else ("Channel", "KafkaChannel")
    for kind in kinds:
        uid = uids.get((kind, route.namespace, route.name))
        if uid is not None:
            return Reference(kind, route.namespace, route.name, uid)
    return None


def _insert(kinds: _Kinds, key: EventTypeKey, entry: _Entry) -> None:
    by_source = kinds.tree.setdefault(key.type, {})
    by_schema = by_source.setdefault(key.source, {})
    by_schema.setdefault(key.schema, {})[key.content_type] = entry


def _find(kinds: _Kinds, key: EventTypeKey) -> _Entry | None:
    by_schema = kinds.tree.get(key.type, {}).get(key.source, {})
    return by_schema.get(key.schema, {}).get(key.content_type)


def _entries(kinds: _Kinds) -> Iterable[_Entry]:
    for by_source in kinds.tree.values():
        for by_schema in by_source.values():
            for by_content in by_schema.values():
                yield from by_content.values()


def reference_of(key: str) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of a resource log key if it is a Broker's or Channel's, else None."""
    kind, _, rest = key.partition("/")
    if kind not in _KINDS:
        return None
    namespace, _, name = rest.partition("/")
    return kind, namespace, name


def uids_of(documents: Mapping[str, Mapping[str, Any]]) -> Uids:
    """(kind, namespace, name) -> uid of every Broker and Channel in the resource log."""
    return {
        ref: str((doc.get("metadata") or {}).get("uid", ""))
        for key, doc in documents.items()
        if (ref := reference_of(key)) is not None
    }


def stale_keys(records: Mapping[str, Observed], uids: Mapping[tuple[str, str, str], str]) -> list[str]:
    """The keys of records whose Broker or Channel is gone or is a new one of the same name."""
    return [
        key
        for key, record in records.items()
        if uids.get((record.key.kind, record.key.namespace, record.key.name)) != record.uid
    ]
