"""The ids of the events stored within each deduplicating Broker's or Channel's window.

`IdIndex` maps an event's identity (its CloudEvents `source` and `id`) to the time its record
was stored, per topic, for the topics whose Broker or Channel declares
`kanal.dev/deduplication-window`. `ingress.dedup_follower` fills it from the topics themselves
(Kafka is the only state) and `ingress.dedup` asks it whether an event is a duplicate.

An identity is kept as `identity(source, id)`: Python's hash of the two strings, a 64-bit
SipHash keyed afresh in every process (a string caches its hash, so this costs a request one
tuple), so nobody outside the process can make two events
collide on purpose, and two different events collide by chance with a probability of about one
in 2^64 per id held. The value is the record's timestamp in milliseconds; entries that share a
millisecond share one int object. Each topic's ids are a dict in insertion order, so the oldest
are at the front and expire from there (`expire`, called once a second); an entry found behind
a younger one is checked against the window when looked up, so a late expiry never makes a
stale id count.

Memory is bounded per process by `ingress_deduplication_max_ids` over all topics: when it is
reached, the oldest ids (of the topic whose oldest is oldest) go first, in chunks of 1%, so the
window is effectively shorter, `kanal_ingress_deduplication_evicted_ids` counts them and a
warning says so at most once a minute. Pure apart from those metrics: no I/O and no await.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Final

from prometheus_client import Counter, Gauge

__all__ = ["DUPLICATES", "EVICTED", "HELD", "IdIndex", "Owner", "Window", "identity"]

log = logging.getLogger(__name__)

DUPLICATES = Counter(
    "kanal_ingress_deduplicated_events",
    "Events answered 202 and not stored again: an event with the same source and id was stored "
    "within the Broker's or Channel's kanal.dev/deduplication-window",
    ["kind", "namespace", "name"],
)
HELD = Gauge(
    "kanal_ingress_deduplication_ids",
    "Event ids this ingress process holds for a Broker's or Channel's deduplication window",
    ["kind", "namespace", "name"],
)
EVICTED = Counter(
    "kanal_ingress_deduplication_evicted_ids",
    "Event ids dropped before their deduplication window ended, because the process held "
    "ingress_deduplication_max_ids ids (the window is effectively shorter meanwhile)",
    ["kind", "namespace", "name"],
)

_WARN_EVERY: Final = 60.0  # seconds between warnings that ids are evicted early


def identity(source: str, event_id: str) -> int:
    """The key of an event's identity, its `source` and `id` (see the module docstring). The same
    in one process whether taken from a request or a Kafka record."""
    return hash((source, event_id))


@dataclass(frozen=True, slots=True)
class Owner:
    """The Broker or Channel a topic belongs to, as the metrics name it."""

    kind: str
    namespace: str
    name: str


class Window:
    """One topic's ids (identity -> timestamp in ms, oldest first) and its window in ms; read by
    `ingress.dedup` on the hot path, changed only through `IdIndex`."""

    __slots__ = ("ids", "owner", "window_ms")

    def __init__(self, owner: Owner, window_ms: int) -> None:
        self.owner = owner
        self.window_ms = window_ms
        self.ids: dict[int, int] = {}


class IdIndex:
    """The ids stored per topic within its window (see the module docstring)."""

    def __init__(self, max_ids: int, clock: Callable[[], float] = time.time) -> None:
        self.max_ids = max_ids
        self._clock = clock
        # topic -> its Window. Read on the hot path by `ingress.dedup` (the same dict for the
        # index's life), changed only here.
        self.windows: dict[str, Window] = {}
        self.reads = 0  # batches of records the follower added: a change worth checking again for
        self._size = 0
        self._last_ts = 0  # the int object of the last timestamp stored, shared by its equals
        self._warned = float("-inf")

    def __len__(self) -> int:
        return self._size

    def set_windows(self, windows: Mapping[str, tuple[Owner, float]]) -> None:
        """The topics to index, each with its owner and window in seconds: those not listed
        are dropped with their ids, new ones start empty, a changed window applies at once."""
        for topic in [t for t in self.windows if t not in windows]:
            dropped = self.windows.pop(topic)
            self._size -= len(dropped.ids)
            for family in (HELD, EVICTED, DUPLICATES):
                with contextlib.suppress(KeyError):
                    family.remove(*_labels(dropped.owner))
        for topic, (owner, seconds) in windows.items():
            window = self.windows.get(topic)
            if window is None or window.owner != owner:
                if window is not None:
                    self._size -= len(window.ids)
                self.windows[topic] = Window(owner, int(seconds * 1000))
            else:
                window.window_ms = int(seconds * 1000)

    def topics(self) -> list[str]:
        return list(self.windows)

    def window_of(self, topic: str) -> float | None:
        """The topic's window in seconds; None if it is not indexed."""
        window = self.windows.get(topic)
        return None if window is None else window.window_ms / 1000

    def owner_of(self, topic: str) -> Owner | None:
        window = self.windows.get(topic)
        return None if window is None else window.owner

    def seen(self, topic: str, key: int, now_ms: int | None = None) -> bool:
        """Whether an event of identity `key` was stored to `topic` within its window."""
        window = self.windows.get(topic)
        if window is None:
            return False
        stored = window.ids.get(key)
        if stored is None:
            return False
        now = int(self._clock() * 1000) if now_ms is None else now_ms
        return stored >= now - window.window_ms

    def add(self, topic: str, key: int, timestamp_ms: int) -> None:
        """Remember that an event of identity `key` was stored to `topic` at `timestamp_ms`."""
        window = self.windows.get(topic)
        if window is None:
            return
        if timestamp_ms == self._last_ts:
            timestamp_ms = self._last_ts  # one object for every id of this millisecond
        else:
            self._last_ts = timestamp_ms
        ids = window.ids
        stored = ids.get(key)
        if stored is not None:
            if stored >= timestamp_ms:
                return  # read back after its own acknowledgement, or an older copy: keep the newer
            del ids[key]  # to the back, in time order
            self._size -= 1
        ids[key] = timestamp_ms
        self._size += 1
        if self._size > self.max_ids:
            self._evict(max(1, self.max_ids // 100))

    def add_many(self, topic: str, entries: Iterable[tuple[int, int]]) -> None:
        for key, timestamp_ms in entries:
            self.add(topic, key, timestamp_ms)

    def expire(self, now_ms: int | None = None) -> int:
        """Drop the ids older than their window, from the front of each topic; returns how many.
        Also sets the held-ids gauges."""
        now = int(self._clock() * 1000) if now_ms is None else now_ms
        gone = 0
        for window in self.windows.values():
            ids = window.ids
            cutoff = now - window.window_ms
            expired = [key for key, _ in _takewhile_older(ids.items(), cutoff)]
            for key in expired:
                del ids[key]
            gone += len(expired)
            HELD.labels(*_labels(window.owner)).set(len(ids))
        self._size -= gone
        return gone

    def _evict(self, count: int) -> None:
        """Drop `count` of the oldest ids (see the module docstring)."""
        while count > 0 and self._size > 0:
            oldest = min(
                (w for w in self.windows.values() if w.ids),
                key=lambda w: next(iter(w.ids.values())),
            )
            ids = oldest.ids
            keys = list(islice(ids, count))
            for key in keys:
                del ids[key]
            self._size -= len(keys)
            count -= len(keys)
            EVICTED.labels(*_labels(oldest.owner)).inc(len(keys))
            now = time.monotonic()
            if now - self._warned >= _WARN_EVERY:
                self._warned = now
                owner = oldest.owner
                log.warning(
                    "deduplication holds ingress_deduplication_max_ids=%d ids: the oldest ids of "
                    "%s %s/%s are dropped before its window of %.0f s ends, so an event sent again "
                    "after about %.0f s may be stored again (kanal_ingress_deduplication_evicted_ids)",
                    self.max_ids,
                    owner.kind,
                    owner.namespace,
                    owner.name,
                    oldest.window_ms / 1000,
                    self._held_for(oldest),
                )

    def _held_for(self, window: Window) -> float:
        """Seconds the oldest id of `window` has been held."""
        if not window.ids:
            return 0.0
        return max(0.0, self._clock() - next(iter(window.ids.values())) / 1000)


def _takewhile_older(items: Iterable[tuple[int, int]], cutoff: int) -> Iterable[tuple[int, int]]:
    for item in items:
        if item[1] >= cutoff:
            return
        yield item


def _labels(owner: Owner) -> tuple[str, str, str]:
    return owner.kind, owner.namespace, owner.name
