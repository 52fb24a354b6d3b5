"""Event discovery at the ingress: which event types each Broker and Channel carries.

`EventTypeRecorder` counts, in memory, the events the ingress has stored per Broker or Channel
and (type, source, dataschema, datacontenttype). It sits on the hot path, so an event of a known
kind costs four dict lookups and an increment: the counts are nested dicts keyed by the
attributes' own strings, so no key object is made per event, and no clock is read per event
(the last-seen time is the flush that first sees the count grown, within `INTERVAL`). A new kind
costs a hash and a small example (its attributes, never its data). At most
`ingress_event_types_max` kinds are recorded per Broker or Channel, counting those other replicas
recorded; events of further kinds are stored and delivered as always, only not recorded, and
`kanal_ingress_event_types_unrecorded_events` counts them (`..._at_cap` is 1 meanwhile).

`EventTypePublisher` writes what changed every `INTERVAL` seconds, and once more on a graceful
stop, as one record per kind and replica to the compacted topic beside the resource log
(`channel.resources.eventtype`), and follows that topic. Why a topic of its own rather than
EventType resources in the controller's resource log: the resource log has one writer, the
controller, and every record in it wakes every follower (each ingress and dispatcher re-derives
its routes and plans); counts that change every few seconds from every ingress replica would
turn the log into a stream of writes nobody routes by, and make the ingress a client of the
controller. A separate compacted topic keyed per replica needs no coordination: each replica
owns its keys, a reader sums them (`merge`), and compaction keeps one record per key.

Restarts lose nothing written: the replica's name is its host and port, so an ingress started
again on the same host takes up its own records (read back before it writes) and counts on from
them; one started elsewhere (a new pod) writes under a new name beside the old records, which
readers keep summing. When a Broker or Channel is deleted (or replaced by a new one of the same
name) every ingress writes tombstones for its records; at start, records of Brokers and Channels
that no longer exist are removed the same way.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from channel.control.log import ResourceLog
from channel.errors import KanalError
from channel.events import CloudEvent, KafkaRecord
from channel.producer import EventSink
from channel.resources.eventtype import (
    MAX_FIELD_CHARS,
    EventTypeKey,
    Observed,
    encode_record,
    eventtype_name,
    eventtypes_topic,
    example_of,
    observed_from,
    record_key,
    reference_prefix,
)
from channel.settings import Settings
from ingress.routing import Route

__all__ = [
    "AT_CAP",
    "INTERVAL",
    "UNRECORDED",
    "EventTypePublisher",
    "EventTypeRecorder",
    "Reference",
    "default_replica",
    "stale_keys",
    "uids_of",
]

log = logging.getLogger(__name__)

INTERVAL: Final = 5.0
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
        """Follow the routing table: keep the counts of Brokers and Channels still routed with the
        same uid, start empty for new ones. Returns the keys of the records this process wrote
        for the ones dropped (deleted, or replaced by a new one of the same name)."""
        kept: dict[str, _Kinds] = {}
        for route in routes:
            ref = _reference(route, uids)
            if ref is None:
                continue
            old = self._by_topic.get(route.topic)
            kept[route.topic] = old if old is not None and old.ref == ref else _Kinds(ref)
        retained = {id(kinds) for kinds in kept.values()}
        dropped = [kinds for kinds in self._by_topic.values() if id(kinds) not in retained]
        self._by_topic = kept
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


def uids_of(documents: Mapping[str, Mapping[str, Any]]) -> Uids:
    """(kind, namespace, name) -> uid of every Broker and Channel in the resource log."""
    uids: Uids = {}
    for key, doc in documents.items():
        kind, _, rest = key.partition("/")
        if kind in _KINDS:
            namespace, _, name = rest.partition("/")
            uids[(kind, namespace, name)] = str((doc.get("metadata") or {}).get("uid", ""))
    return uids


def stale_keys(records: Mapping[str, Observed], uids: Mapping[tuple[str, str, str], str]) -> list[str]:
    """The keys of records whose Broker or Channel is gone or is a new one of the same name."""
    return [
        key
        for key, record in records.items()
        if record is not None
        and uids.get((record.key.kind, record.key.namespace, record.key.name)) != record.uid
    ]


def default_replica(settings: Settings) -> str:
    """This process's name in its records: its host and port, the same after a restart there."""
    return f"{socket.gethostname()}:{settings.ingress_port}"


class EventTypePublisher:
    """Follows the EventType topic, and writes the recorder's changes to it (see the module
    docstring). Best effort: where Kafka refuses the topic the ingress logs one line and serves
    as before, recording nothing."""

    def __init__(
        self,
        settings: Settings,
        sink: EventSink,
        recorder: EventTypeRecorder,
        *,
        resources_caught_up: Callable[[], Awaitable[None]],
        interval: float = INTERVAL,
    ) -> None:
        self.recorder = recorder
        self._sink = sink
        self._interval = interval
        self._topic = eventtypes_topic(settings.kafka_resources_topic)
        self._log = ResourceLog(settings, self._on_records, topic=self._topic)
        self._resources_caught_up = resources_caught_up
        self._records: dict[str, Observed] = {}
        self._uids: Uids = {}
        self._loaded = False
        self._pending: list[str] = []  # keys to tombstone, written with the next flush

    # -- from the resource log (its listener; must not block) --------------------------------

    def resources_changed(
        self, routes: Iterable[Route], documents: Mapping[str, Mapping[str, Any]], changed: frozenset[str]
    ) -> None:
        old, self._uids = self._uids, uids_of(documents)
        self._pending.extend(self.recorder.set_routes(routes, self._uids))
        for kind, namespace, name in (ref for ref in map(_ref_of, changed) if ref is not None):
            if (kind, namespace, name) in old and old[(kind, namespace, name)] != self._uids.get(
                (kind, namespace, name)
            ):
                prefix = reference_prefix(kind, namespace, name)
                self._pending.extend(key for key in self._records if key.startswith(prefix))
        self.recorder.learn(self._records.values())

    # -- the topic ---------------------------------------------------------------------------

    def _on_records(self, documents: Mapping[str, dict[str, Any]], changed: frozenset[str]) -> None:
        fresh = []
        for key in changed:
            doc = documents.get(key)
            record = None if doc is None else observed_from(doc)
            if record is None:
                self._records.pop(key, None)
            else:
                self._records[key] = record
                fresh.append(record)
        self.recorder.learn(fresh)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: follow the topic and write every `interval`; then write once more.
        Started once the resource log is loaded (the routes are known)."""
        try:
            await self._log.start()
        except (KanalError, KafkaError, OSError) as exc:  # an ACL, say: recording is off
            log.warning("event types are not recorded: cannot use topic %s (%s)", self._topic, exc)
            await self._log.close()
            return
        try:
            async with asyncio.TaskGroup() as tg:
                follower = tg.create_task(self._log.run())
                await _until(self._log.loaded.wait(), stop)
                if not stop.is_set():
                    # This replica's records from before a restart, taken up before it writes.
                    self.recorder.learn(self._records.values(), take_up=True)
                    # Records of Brokers and Channels deleted while no ingress ran: decided after
                    # reading the resource log again, so no record is newer than what it shows.
                    await _until(self._resources_caught_up(), stop)
                    self._pending.extend(stale_keys(self._records, self._uids))
                    self._loaded = True
                while not stop.is_set():
                    await _until(asyncio.sleep(self._interval), stop)
                    await self.flush()
                await self.flush()
                follower.cancel()
        finally:
            await self._log.close()

    async def flush(self) -> None:
        """Write the tombstones due and the counts that grew."""
        if not self._loaded:
            return
        tombstones, self._pending = self._pending, []
        changes = self.recorder.changes()
        records = [KafkaRecord(key.encode(), None) for key in dict.fromkeys(tombstones)]
        records += [KafkaRecord(record_key(o.key, o.replica).encode(), encode_record(o)) for o in changes]
        if not records:
            return
        try:
            await self._sink.send(self._topic, records)
        except KanalError as exc:
            self._pending.extend(tombstones)
            log.warning("cannot write event types to %s: %s", self._topic, exc)
        else:
            self.recorder.written(changes)


async def _until(awaitable: Awaitable[Any], stop: asyncio.Event) -> None:
    """Wait for `awaitable` or `stop`, whichever comes first (the other is cancelled)."""
    waiting = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        stopping.cancel()


def _ref_of(key: str) -> tuple[str, str, str] | None:
    kind, _, rest = key.partition("/")
    if kind not in _KINDS:
        return None
    namespace, _, name = rest.partition("/")
    return kind, namespace, name
