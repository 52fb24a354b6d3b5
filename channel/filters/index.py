"""Finds the Triggers of one Broker whose filters match an event, without trying them all.

A Broker may have many Triggers, most of them filtering on an exact ``type``. The index files
each filter that requires an exact attribute value under that (attribute, value) pair; for an
event it evaluates only the filters filed under the event's own values plus those that
require nothing exact (``prefix``, ``any``, ``not``, most ``cesql`` ...). The per-event cost
therefore grows with the Triggers that could match, not with all Triggers. Every candidate
is still evaluated in full, so the index never changes a result, only the work done.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from channel.filters.attributes import Attributes, lookup
from channel.filters.matchers import Filter, IndexableFilter

__all__ = ["FilterIndex"]

K = TypeVar("K", bound=Hashable)

# When a filter requires several exact values, file it under the first of these it has,
# else under its alphabetically first requirement: `type` is what Triggers select on most.
_PREFERRED: Final = ("type", "source", "subject")


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a key is filed: under (name, value), or with the unindexed filters if None."""

    name: str | None
    value: str


class FilterIndex(Generic[K]):
    """The filters of many Triggers (by key, e.g. a Trigger's name), matched together."""

    __slots__ = ("_buckets", "_counter", "_order", "_others", "_slots")

    def __init__(self) -> None:
        self._buckets: dict[str, dict[str, dict[K, Filter]]] = {}
        self._others: dict[K, Filter] = {}
        self._slots: dict[K, _Slot] = {}
        self._order: dict[K, int] = {}
        self._counter = 0

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def add(self, key: K, filter: Filter) -> None:
        """Add a Trigger's filter; a key already present gets the new filter and keeps its place."""
        if key in self._slots:
            self._detach(key)
        else:
            self._order[key] = self._counter
            self._counter += 1
        slot = _slot_for(filter)
        self._slots[key] = slot
        if slot.name is None:
            self._others[key] = filter
        else:
            values = self._buckets.setdefault(slot.name, {})
            values.setdefault(slot.value, {})[key] = filter

    def remove(self, key: K) -> None:
        """Forget a key; nothing happens if it is not there."""
        if key in self._slots:
            self._detach(key)
            del self._order[key]

    def _detach(self, key: K) -> None:
        slot = self._slots.pop(key)
        if slot.name is None:
            del self._others[key]
            return
        values = self._buckets[slot.name]
        bucket = values[slot.value]
        del bucket[key]
        # Drop emptied containers so `match` never walks names no filter uses any more.
        if not bucket:
            del values[slot.value]
            if not values:
                del self._buckets[slot.name]

    def clear(self) -> None:
        """Forget every key."""
        self._buckets.clear()
        self._others.clear()
        self._slots.clear()
        self._order.clear()

    def match(self, attributes: Attributes) -> list[K]:
        """The keys whose filter matches the event, in the order the keys were added."""
        hits: list[K] = []
        for name, values in self._buckets.items():
            value = lookup(attributes, name)
            if value is not None:
                bucket = values.get(value)
                if bucket is not None:
                    for key, candidate in bucket.items():
                        if candidate.matches(attributes):
                            hits.append(key)
        for key, candidate in self._others.items():
            if candidate.matches(attributes):
                hits.append(key)
        if len(hits) > 1:
            hits.sort(key=self._order.__getitem__)
        return hits


def _slot_for(filter: Filter) -> _Slot:
    if not isinstance(filter, IndexableFilter):
        return _Slot(None, "")
    required = filter.exact_requirements
    if not required:
        return _Slot(None, "")
    name = next((n for n in _PREFERRED if n in required), None) or min(required)
    return _Slot(name, required[name])
