"""Which offsets may be committed when records complete out of order. Pure.

Deliveries run concurrently, so record 7 may finish before record 5. Kafka's committed offset
means "everything below this is done", so per partition we commit the lowest offset still in
flight (or one past the highest begun, when none is): records begun but not done are never
skipped, however their deliveries interleave. Offsets need not be contiguous (compaction and
transaction markers leave gaps). `begin` and `done` are O(log n) (a heap with lazy deletion).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["OffsetTracker", "PartitionOffsets"]

K = TypeVar("K", bound=Hashable)


class PartitionOffsets:
    """One partition's in-flight offsets."""

    __slots__ = ("_done", "_heap", "_next")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._done: set[int] = set()
        self._next: int | None = None  # one past the highest offset begun

    def begin(self, offset: int) -> None:
        heapq.heappush(self._heap, offset)
        if self._next is None or offset >= self._next:
            self._next = offset + 1

    def done(self, offset: int) -> None:
        self._done.add(offset)
        heap = self._heap
        while heap and heap[0] in self._done:
            self._done.discard(heapq.heappop(heap))

    @property
    def pending(self) -> int:
        return len(self._heap) - len(self._done)

    def committable(self) -> int | None:
        """The offset to commit (the next to read), or None before anything began."""
        if self._heap:
            return self._heap[0]
        return self._next


class OffsetTracker(Generic[K]):
    """In-flight offsets of many partitions; reports only commits that moved forward."""

    def __init__(self) -> None:
        self._partitions: dict[K, PartitionOffsets] = {}
        self._committed: dict[K, int] = {}

    def begin(self, key: K, offset: int) -> None:
        partition = self._partitions.get(key)
        if partition is None:
            partition = self._partitions[key] = PartitionOffsets()
        partition.begin(offset)

    def done(self, key: K, offset: int) -> None:
        partition = self._partitions.get(key)
        if partition is not None:
            partition.done(offset)

    def pending(self, key: K) -> int:
        partition = self._partitions.get(key)
        return partition.pending if partition else 0

    def commits(self) -> dict[K, int]:
        out: dict[K, int] = {}
        for key, partition in self._partitions.items():
            offset = partition.committable()
            if offset is not None and offset > self._committed.get(key, -1):
                out[key] = offset
        return out

    def mark_committed(self, offsets: Mapping[K, int]) -> None:
        for key, offset in offsets.items():
            if offset > self._committed.get(key, -1):
                self._committed[key] = offset

    def revoke(self, keys: Iterable[K]) -> None:
        for key in keys:
            self._partitions.pop(key, None)
            self._committed.pop(key, None)
