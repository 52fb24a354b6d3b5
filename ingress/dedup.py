"""Duplicate-free ingestion: deciding, per event, whether a deduplicating Broker or Channel stores it.

For a Broker or Channel with `kanal.dev/deduplication-window`, the ingress hands each request's
events here instead of to the sink. Each event is decided on its own (a batch's too):

- its identity (`source`, `id`) is in the index within the window: a duplicate, not stored;
- another request of this process is storing the same identity now: this one waits for that
  one's outcome and decides again (a duplicate once that one is stored; its own try if it failed);
- else it is claimed, so the requests that come meanwhile wait on it, and the follower is asked
  whether the index holds every record acknowledged anywhere before the request arrived, or
  before it by at most `ingress_deduplication_max_staleness` (`Follower.synced`): at once if
  a recent round read them, else once a round shared by the requests waiting has. Found then, it
  is a duplicate after all; else it is stored, and once Kafka acknowledges it the index has it.

So an event another replica stored (and acknowledged) before this request arrived (by the
staleness bound, default 0.25 s) is found, whichever replica stored it; what neither replica had
stored when the other's request arrived (two first copies at the same instant) can be stored
twice, the limit docs/deduplication.md states. The request is answered 202 when every one of
its events is stored or a duplicate; if the follower cannot catch up within `timeout`, or Kafka
refuses the write, it gets the error (503, to send again). No task per request: futures shared
by rounds, and callbacks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from channel.errors import KanalError, Unavailable
from channel.events import CloudEvent, KafkaRecord
from channel.producer import EventSink
from ingress.dedup_index import DUPLICATES, IdIndex, identity

__all__ = ["Deduplicator", "Follower", "Stored", "event_key"]

# Called once per request: `done(error)` with the error and nothing stored by this request, or
# with None and every event stored; `done(None, stored)` with the events stored when the others
# were duplicates (IngressApp._stored's signature, so the app hands its own callback).
Stored = Callable[..., None]


class Follower(Protocol):
    # Until when (time.monotonic()) a request may be decided with the index as it is and nothing
    # else to do: `synced` would return None and start no round. -inf when that is not known.
    # Read on the hot path, so an attribute, not a call.
    fresh_until: float

    def synced(self, arrived: float) -> asyncio.Future[None] | None:
        """None if the index already holds what a request that `arrived` (time.monotonic())
        must see; else a future done once it does, failed with Unavailable if that takes too
        long. Shared: never cancel it. (`ingress.dedup_follower`: every record acknowledged
        before `arrived`, or before it by at most ingress_deduplication_max_staleness.)"""
        ...


def event_key(event: CloudEvent) -> int:
    """The identity of `event` as the index keys it."""
    attributes = event.attributes
    return identity(attributes["source"], attributes["id"])


class _Request:
    __slots__ = ("arrived", "claimed", "deadline", "done", "events", "keys", "records", "seen", "topic")

    def __init__(
        self,
        topic: str,
        keys: list[int],
        events: Sequence[CloudEvent],
        records: Sequence[KafkaRecord],
        done: Stored,
        arrived: float,
        deadline: float,
    ) -> None:
        self.topic = topic
        self.keys = keys
        self.events = events
        self.records = records
        self.done = done
        self.arrived = arrived  # time.monotonic()
        self.deadline = deadline
        self.claimed: list[int] = []  # indices of the events this request is storing
        self.seen = 0  # the index's `reads` when it was last looked at for this request


class Deduplicator:
    """Decides and stores the events of deduplicating topics (see the module docstring)."""

    def __init__(
        self,
        index: IdIndex,
        follower: Follower,
        sink: EventSink,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.index = index
        self._windows = index.windows
        self._follower = follower
        self._sink = sink
        self._timeout = timeout
        self._clock = clock
        # Per topic, the identities being stored by a request of this process, with the callbacks
        # of the requests waiting for its outcome. At most one entry per event in flight, and
        # every request in flight is bounded by ingress_max_in_flight.
        # An identity claimed with nobody waiting yet holds the empty tuple: no list per event.
        self._storing: dict[str, dict[int, list[Callable[[], None]] | tuple[()]]] = {}

    def submit(
        self, topic: str, events: Sequence[CloudEvent], records: Sequence[KafkaRecord], done: Stored
    ) -> None:
        """Store the events of `records` that are not duplicates; `done` is called later.

        The common case, one event never seen that nobody is storing, with the index fresh enough,
        goes straight to the sink in a few steps here; anything else is decided by `_decide`,
        which would decide that case the same way."""
        if len(events) == 1:  # most requests: binary or structured mode
            attributes = events[0].attributes
            key = identity(attributes["source"], attributes["id"])
            window = self._windows.get(topic)
            fresh = time.monotonic() <= self._follower.fresh_until
            if fresh and window is not None and key not in window.ids:
                storing = self._storing.get(topic)
                if storing is None:
                    storing = self._storing[topic] = {}
                if key not in storing:
                    storing[key] = ()
                    self._sink.submit(topic, records, partial(self._stored_new, topic, key, done))
                    return
            keys = [key]
        else:
            keys = [identity(event.attributes["source"], event.attributes["id"]) for event in events]
        arrived = time.monotonic()
        self._decide(_Request(topic, keys, events, records, done, arrived, arrived + self._timeout))

    def _stored_new(self, topic: str, key: int, done: Stored, error: KanalError | None) -> None:
        """`_stored` for an event `submit` stored at once."""
        if error is None:
            self.index.add(topic, key, int(self._clock() * 1000))
        storing = self._storing.get(topic)
        if storing is not None:
            for wake in storing.pop(key, ()):
                wake()
            if not storing:
                del self._storing[topic]
        done(error)

    def _decide(self, request: _Request) -> None:
        """Every case, event by event: a few dict lookups each (see the module docstring)."""
        topic = request.topic
        window = self._windows.get(topic)
        if window is None:  # turned off meanwhile: stored as without it
            request.claimed = list(range(len(request.keys)))
            self._store(request)
            return
        ids = window.ids
        cutoff: int | None = None  # read the clock only for an id the index has
        storing = self._storing.get(topic)
        if storing is None:
            storing = self._storing[topic] = {}
        keys = request.keys
        new: list[int] = []
        for i, key in enumerate(keys):
            stored = ids.get(key)
            if stored is not None:
                if cutoff is None:
                    cutoff = int(self._clock() * 1000) - window.window_ms
                if stored >= cutoff:
                    continue  # a duplicate
            waiting = storing.get(key)
            if waiting is not None:
                if time.monotonic() > request.deadline:
                    request.done(Unavailable("duplicates could not be ruled out in time"))
                    return
                if not isinstance(waiting, list):
                    waiting = storing[key] = []
                waiting.append(partial(self._decide, request))  # decide again once it is settled
                return
            if len(keys) > 1 and key in keys[:i]:
                continue  # a duplicate of an earlier event of the same batch
            new.append(i)
        if not new:
            self._finish(request)
            return
        for i in new:
            storing[keys[i]] = ()
        request.claimed = new
        request.seen = self.index.reads
        synced = self._follower.synced(request.arrived)
        if synced is not None:
            synced.add_done_callback(partial(self._synced, request))
        else:  # the index is fresh enough already
            self._store(request)

    def _synced(self, request: _Request, synced: asyncio.Future[None]) -> None:
        error = synced.exception() if not synced.cancelled() else Unavailable("the ingress is stopping")
        if error is not None:
            self._release(request)
            failure = error if isinstance(error, KanalError) else Unavailable(str(error))
            request.done(failure)
            return
        if self.index.reads != request.seen:  # the follower read other replicas' records meanwhile
            topic, now_ms = request.topic, int(self._clock() * 1000)
            found = [i for i in request.claimed if self.index.seen(topic, request.keys[i], now_ms)]
            if found:  # stored by another replica: let the requests waiting on them see it
                request.claimed = [i for i in request.claimed if i not in found]
                self._release_keys(topic, [request.keys[i] for i in found])
            if not request.claimed:
                self._finish(request)
                return
        self._store(request)

    def _store(self, request: _Request) -> None:
        records = request.records
        if len(request.claimed) < len(records):
            records = [records[i] for i in request.claimed]
        self._sink.submit(request.topic, records, partial(self._stored, request))

    def _stored(self, request: _Request, error: KanalError | None) -> None:
        """Kafka's answer: index what was stored, wake the requests waiting on these identities,
        answer."""
        topic, keys, claimed = request.topic, request.keys, request.claimed
        if error is None:
            now_ms = int(self._clock() * 1000)
            add = self.index.add
            for i in claimed:
                add(topic, keys[i], now_ms)
        self._release(request)
        if error is not None or len(claimed) == len(keys):  # no duplicates: nothing to count
            request.done(error)
        else:
            self._finish(request)

    def _finish(self, request: _Request) -> None:
        duplicates = len(request.keys) - len(request.claimed)
        if duplicates:
            owner = self.index.owner_of(request.topic)
            if owner is not None:
                DUPLICATES.labels(owner.kind, owner.namespace, owner.name).inc(duplicates)
        request.done(None, [request.events[i] for i in request.claimed])

    def _release(self, request: _Request) -> None:
        self._release_keys(request.topic, [request.keys[i] for i in request.claimed])

    def _release_keys(self, topic: str, keys: Sequence[int]) -> None:
        storing = self._storing.get(topic)
        if storing is None:
            return
        for key in keys:
            for wake in storing.pop(key, ()):
                wake()
        if not storing:
            del self._storing[topic]
