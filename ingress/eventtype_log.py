"""The ingress's EventType records in Kafka: written every few seconds, followed, cleaned up.

`EventTypePublisher` writes the counts `ingress.eventtypes.EventTypeRecorder` has seen grow
every `INTERVAL` seconds, and once more after the last request of a graceful stop, as one record
per kind and replica to the compacted topic beside the resource log (`channel.resources.eventtype`),
and follows that topic. Why a topic of its own rather than EventType resources in the
controller's resource log: the resource log has one writer, the controller, and every record in
it wakes every follower (each ingress and dispatcher re-derives its routes and plans); counts
that change every few seconds from every ingress replica would turn the log into a stream of
writes nobody routes by, and make the ingress a client of the controller. A separate compacted
topic keyed per replica needs no coordination: each replica owns its keys, a reader sums them
(`merge`), and compaction keeps one record per key.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from aiokafka.errors import KafkaError

from channel.control.log import ResourceLog
from channel.errors import KanalError
from channel.events import KafkaRecord
from channel.producer import EventSink
from channel.resources.eventtype import (
    Observed,
    encode_record,
    eventtypes_topic,
    observed_from,
    record_key,
)
from channel.settings import Settings
from ingress.eventtypes import EventTypeRecorder, Uids, reference_of, stale_keys, uids_of
from ingress.routing import Route

__all__ = ["INTERVAL", "EventTypePublisher", "default_replica"]

log = logging.getLogger(__name__)

INTERVAL: Final = 5.0


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
        self._pending: dict[str, None] = {}  # keys to tombstone with the next write (a set, ordered)

    # -- from the resource log (its listener; must not block) --------------------------------

    def resources_changed(
        self, routes: Iterable[Route], documents: Mapping[str, Mapping[str, Any]], changed: frozenset[str]
    ) -> None:
        self._uids = uids_of(documents)
        self._pending.update(dict.fromkeys(self.recorder.set_routes(routes, self._uids)))
        # The records of a Broker or Channel just deleted or made again: those not of it as it is
        # now (by uid), so another replica's first records of a new one are kept.
        refs = {ref for ref in map(reference_of, changed) if ref is not None}
        mine = {k: r for k, r in self._records.items() if (r.key.kind, r.key.namespace, r.key.name) in refs}
        self._pending.update(dict.fromkeys(stale_keys(mine, self._uids)))
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
                    self._pending.update(dict.fromkeys(stale_keys(self._records, self._uids)))
                    self._loaded = True
                while not stop.is_set() and not follower.done():
                    await _until(asyncio.sleep(self._interval), stop)
                    await self.flush()
                await self.flush()
                follower.cancel()
        except* KanalError as group:  # reading the topic refused (an ACL): the ingress serves on
            log.warning("event types are no longer recorded: %s", group.exceptions[0])
        finally:
            await self._log.close()

    async def flush(self) -> None:
        """Write the tombstones due and the counts that grew."""
        if not self._loaded:
            return
        tombstones, self._pending = self._pending, {}
        changes = self.recorder.changes()
        records = [KafkaRecord(key.encode(), None) for key in tombstones]
        records += [KafkaRecord(record_key(o.key, o.replica).encode(), encode_record(o)) for o in changes]
        if not records:
            return
        try:
            await self._sink.send(self._topic, records)
        except KanalError as exc:
            self._pending.update(tombstones)
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
