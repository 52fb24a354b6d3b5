"""One Trigger's (or Subscription's) share of a topic, and the decisions about it. Pure.

A `Lane` is the state a topic consumer keeps per Trigger: the deliveries queued and in flight,
and per partition where the lane stands. A partition is either attached (fed by the shared
reader from `start` on) or catching up (fed by the lane's own reader, `catching` being the next
offset it will read). The module-level functions are the decisions taken on that state, as plain
values in and out, so they are tested by tables: whether a record is offered to the lane, how
long the shared reader may wait for it before detaching it, when it rejoins the shared reader,
which offset it may commit, and the limits that protect its subscriber (`limits_for`: the
Trigger's annotations over the global settings). Nothing here awaits; the readers (`dispatcher.consumer`,
`dispatcher.catchup`), the workers (`dispatcher.workers`) and the commits (`dispatcher.commits`)
do the I/O.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

from aiokafka import TopicPartition

from channel.events import CloudEvent
from channel.resources.protection import Protection
from channel.settings import Settings
from dispatcher.dispatch import Source
from dispatcher.gate import Gate
from dispatcher.limiter import Limits
from dispatcher.offsets import CreationFloor, PartitionOffsets
from dispatcher.plan import Plan

__all__ = [
    "DETACH_AFTER",
    "Item",
    "Lane",
    "Sequence",
    "committable",
    "detach_wait",
    "limits_for",
    "may_rejoin",
    "offered",
    "sequence",
]

# How long per second the shared reader waits for one full lane before reading it separately.
DETACH_AFTER = 0.2

# A delivery waiting for a worker: the partition's in-flight offsets it belongs to, the event, its origin.
Item = tuple[PartitionOffsets, CloudEvent, Source]
# What an ordered lane delivers one at a time, in offset order: a partition's events of one key.
Sequence = tuple[TopicPartition, bytes | None]


class Lane:
    """One Trigger's (or Subscription's) share of a topic."""

    def __init__(self, plan: Plan, settings: Settings) -> None:
        self.plan = plan
        self.settings = settings
        self.buffer = settings.dispatcher_lane_buffer
        limits = limits_for(plan.protection, settings)
        # What every attempt to the subscriber waits for: its in-flight limit (adaptive or fixed),
        # its rate limit, a Retry-After pause.
        self.gate = Gate(limits)
        self.limit = limits.max_in_flight
        # Deliveries waiting for a worker: unordered lanes share one queue served by up to
        # `limit` workers; ordered lanes have one queue and one worker per partition and key
        # (`sequence`), at most one per event in flight, so at most `buffer`.
        self.queue: deque[Item] = deque()
        self.workers = 0
        self.serial: dict[Sequence, deque[Item]] = {}
        self.pending = 0  # deliveries begun and not finished, all partitions
        self.room = asyncio.Event()
        self.room.set()
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        # A partition is either attached (fed by the shared reader from `start` on) or catching
        # up (fed by the lane's own reader, `catching` being the next offset it will read).
        self.start: dict[TopicPartition, int] = {}
        self.catching: dict[TopicPartition, int] = {}
        self.moved = False  # `catching` got a partition: the lane's reader must seek again
        # How long the shared reader waited for this lane in the current one-second window.
        self.window = 0.0
        self.waited = 0.0
        # Partitions begun at the creation time of a Trigger without a start point (without a
        # committed offset either): records older than the Trigger are not its own.
        self.floor = CreationFloor()
        self.committed: dict[TopicPartition, int] = {}
        self.tasks: set[asyncio.Task[None]] = set()  # the workers
        self.reader: asyncio.Task[None] | None = None
        self.retired = False

    @property
    def key(self) -> str:
        return self.plan.key

    def set_plan(self, plan: Plan) -> None:
        """The Trigger changed (filter, subscriber, delivery, annotations): deliver by `plan` now."""
        self.plan = plan
        limits = limits_for(plan.protection, self.settings)
        self.gate.configure(limits)
        self.limit = limits.max_in_flight

    def full(self) -> bool:
        return self.pending >= self.buffer

    def forget(self, tp: TopicPartition) -> None:
        for table in (self.offsets, self.start, self.catching, self.committed):
            table.pop(tp, None)
        self.floor.forget(tp)

    def committable(self, tp: TopicPartition, position: int | None) -> int | None:
        """The offset this lane may commit on `tp`, given the shared reader's `position` there."""
        parts = self.offsets.get(tp)
        return committable(
            holds=self.floor.holds(tp),
            lowest=parts.lowest() if parts is not None else None,
            start=self.start.get(tp),
            position=position,
            catching=self.catching.get(tp),
        )


def limits_for(protection: Protection, settings: Settings) -> Limits:
    """A subscriber's limits: what its Trigger's annotations declare, else the global settings.
    A rate limit without a burst may start a tenth of a second's worth at once (at least one)."""
    rate = protection.rate_limit
    if rate is None and settings.dispatcher_rate_limit > 0:
        rate = settings.dispatcher_rate_limit
    burst = protection.rate_limit_burst or settings.dispatcher_rate_limit_burst
    if not burst:
        burst = max(1, math.ceil(rate / 10)) if rate is not None else 1
    return Limits(
        max_in_flight=protection.max_in_flight or settings.dispatcher_max_in_flight,
        rate=rate,
        burst=burst,
        adaptive=settings.dispatcher_adaptive_concurrency
        if protection.adaptive is None
        else protection.adaptive,
    )


def sequence(tp: TopicPartition, key: bytes | None) -> Sequence:
    """The sequence an event of an ordered lane is delivered in: its partition's events with the
    same record key (its partitionkey), one at a time in offset order. So an event being retried
    holds back only its own key; other keys of the partition go on, each in order. Events without
    a key are one sequence per partition, in order among themselves, as before keys were apart."""
    return (tp, key)


def offered(start: int | None, offset: int) -> bool:
    """Whether the shared reader offers the record at `offset` to a lane attached from `start`
    (None: the lane is not attached to the partition; it is catching up, or not begun there)."""
    return start is not None and offset >= start


def detach_wait(now: float, window: float, waited: float, alone: bool) -> tuple[float, float, float | None]:
    """How long the shared reader may wait for a full lane: (window, waited, timeout).

    A lane that is alone on the partition delays nobody, so the reader waits for it without a
    bound (None). Otherwise it waits at most `DETACH_AFTER` per one-second window for any one
    lane; `window` is when the lane's current window began and `waited` how long it was waited
    for in it (both renewed once the window is over a second old).
    """
    if now - window > 1.0:
        window, waited = now, 0.0
    return window, waited, None if alone else max(0.0, DETACH_AFTER - waited)


def may_rejoin(offset: int, position: int, pending: int, buffer: int, assigned: bool) -> bool:
    """Whether a lane catching up, whose next record is at `offset`, goes back to the shared reader
    now at `position`: only once the shared reader has not yet handed out that record, the lane
    has room again (at most half its buffer in flight) and the partition is still this process's."""
    return offset >= position and pending * 2 <= buffer and assigned


def committable(
    *, holds: bool, lowest: int | None, start: int | None, position: int | None, catching: int | None
) -> int | None:
    """The offset a lane commits on a partition, or None for nothing.

    Nothing while its creation floor `holds` (a commit before the boundary would let a restart
    deliver older records). Else the `lowest` offset still in flight; else, attached from `start`,
    the shared reader's `position` (everything below it was offered) but never before `start`;
    else, catching up, the next offset its own reader reads.
    """
    if holds:
        return None
    if lowest is not None:
        return lowest
    if start is not None:
        return max(start, start if position is None else position)
    return catching
