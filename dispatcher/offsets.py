"""Which offsets may be committed when records complete out of order, and where a Trigger's share
of a partition begins when it has committed nothing there. Pure.

Deliveries run concurrently, so record 7 may finish before record 5. Kafka's committed offset
means "everything below this is done", so per partition we commit the lowest offset still in
flight (or one past the highest begun, when none is): records begun but not done are never
skipped, however their deliveries interleave. Offsets need not be contiguous (compaction and
transaction markers leave gaps). `begin` and `done` are O(log n) (a heap with lazy deletion).

A lane begins on a partition at the Trigger's committed offset; without one, at its start point,
the end of the partition when it was created, as the controller recorded it
(`channel.resources.start`): exact on every broker, so nothing before it is ever read for the
lane, and nothing needs filtering by time. Only a Trigger created before start points were
recorded begins at its creation time, through the broker's time index, behind a `CreationFloor`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition

from channel.resources.start import StartPoint

__all__ = ["CreationFloor", "PartitionOffsets", "first_offsets"]


def first_offsets(
    partitions: Iterable[TopicPartition],
    committed: Mapping[TopicPartition, int],
    start: StartPoint | None,
    log_starts: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Where a lane begins on each of `partitions` that an offset places: its committed offset,
    else its start point, never before the start of the log (`log_starts`, needed only for
    partitions without a committed offset). The partitions left out have neither: they begin at
    the Trigger's creation time."""
    out: dict[TopicPartition, int] = {}
    for tp in partitions:
        if tp in committed:
            out[tp] = committed[tp]
        elif start is not None:
            out[tp] = start.offset(tp.partition, log_starts.get(tp, 0))
    return out


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


class CreationFloor:
    """Where a Trigger created at `created_ms`, and without a start point, begins on partitions it
    has no committed offset for.

    Its reading starts at `offsets_for_times(created_ms)`, which some brokers answer too early
    (the embedded one answers with the start of an older batch). So until the first record
    stamped at or after the creation time, older records are refused. That first record is the
    boundary, as `offsets_for_times` defines it: it and everything after it are the Trigger's,
    whatever their timestamps. Until the boundary is seen nothing may be committed, because a
    committed offset before it would let a restarted dispatcher deliver the older records.
    """

    __slots__ = ("_floors",)

    def __init__(self) -> None:
        self._floors: dict[object, int] = {}

    def set(self, partition: object, created_ms: int) -> None:
        self._floors[partition] = created_ms

    def forget(self, partition: object) -> None:
        self._floors.pop(partition, None)

    def refuses(self, partition: object, timestamp: int) -> bool:
        """Whether the record is older than the Trigger; the first that is not opens the partition."""
        self.reached(partition, timestamp)
        return partition in self._floors

    def reached(self, partition: object, timestamp: int) -> None:
        """A record stamped `timestamp` was read past the start: open the partition if that is late enough."""
        floor = self._floors.get(partition)
        if floor is not None and timestamp >= floor:
            del self._floors[partition]

    def holds(self, partition: object) -> bool:
        """Whether commits on `partition` must wait: its boundary has not been read yet."""
        return partition in self._floors
