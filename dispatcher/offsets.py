"""Which offsets may be committed when records complete out of order. Pure.

Deliveries run concurrently, so record 7 may finish before record 5. Kafka's committed offset
means "everything below this is done", so per partition we commit the lowest offset still in
flight (or one past the highest begun, when none is): records begun but not done are never
skipped, however their deliveries interleave. Offsets need not be contiguous (compaction and
transaction markers leave gaps). `begin` and `done` are O(log n) (a heap with lazy deletion).
"""

from __future__ import annotations

import heapq

__all__ = ["PartitionOffsets"]


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

    def lowest(self) -> int | None:
        """The lowest offset begun and not done, or None when nothing is in flight."""
        return self._heap[0] if self._heap else None

    def committable(self) -> int | None:
        """The offset to commit (the next to read), or None before anything began."""
        if self._heap:
            return self._heap[0]
        return self._next
