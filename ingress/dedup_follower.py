"""Reading the deduplicating Brokers' and Channels' own topics back into the ingress's id index.

Kafka is the only state: each ingress replica follows the topics of the Brokers and Channels
that declare `kanal.dev/deduplication-window`, all of their partitions, assigned by hand (no
consumer group, nothing committed), and puts the `ce_source` and `ce_id` of every record into
`ingress.dedup_index.IdIndex` with the record's timestamp. A topic newly followed (at start,
or when a Broker turns deduplication on) is read from `offsets_for_times(now - window)` to its
end at once, so a restarted replica knows what its predecessors and the other replicas stored.
After that it reads on demand: a partition is fetched only while a round needs it read further
(the others are paused), and this process's own writes are skipped (`written`), so a replica
that is the only writer fetches nothing and costs its broker no reads.

`synced(arrived)` is the barrier `ingress.dedup` passes before it stores an event it has not
seen. A round takes the end offsets of every followed partition (one ListOffsets per broker, on
a connection of its own) and waits until the follower has read up to them, or what lies between
is this process's own. Every write any replica had acknowledged before the round began lies
below those ends (acks=all: Kafka acknowledges only below its high watermark), so it is in the
index when the round is done. How fresh the index must be is `max_staleness`
(`ingress_deduplication_max_staleness`):

- 0: every request waits for a round that begins after it arrived (one round at a time, shared
  by every request that came before it began): a copy another replica had acknowledged before
  the request arrived is always found, at the cost of a ListOffsets round trip in each request's
  latency;
- above 0 (the default, 0.25 s): a request is decided at once if the last round that completed
  began at most `max_staleness` before it arrived, else it waits for one that did. A copy
  acknowledged elsewhere at least `max_staleness` before the request arrived is found. While
  requests come, a round is started ahead of need once the last one is `max_staleness` old less
  a lead: four times what rounds have been taking (a moving average), at least 20 ms and at most
  half the bound. So under steady traffic no request waits, and a replica makes about one round
  per bound (four a second by default), not more: each costs the broker a ListOffsets, which
  the embedded broker answers at the expense of the writes beside it. A round that takes longer
  than the lead holds up only the requests that arrive after the bound has passed, and only for
  the rest of that round. An idle ingress makes no rounds.

Some brokers (the embedded one) answer ListOffsets with one past the first record of a
partition's last batch: reading that record means having read its whole batch, since a
fetch returns whole batches and every record fetched is indexed at once. A round that takes
longer than `timeout` (a topic still being read after a start, Kafka slow) fails its requests
with Unavailable (503, Retry-After).

The follower's fetch wait is the dispatcher's event fetch wait (`kafka_event_fetch_max_wait_ms`):
the embedded broker answers a fetch only when its wait expires, so a round that must read
another replica's writes lasts at least that long there; Apache Kafka answers as soon as
records arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import Histogram

from channel.errors import Unavailable
from channel.kafka import client_options, create_admin
from channel.settings import Settings
from ingress.dedup_index import IdIndex, Owner, identity

__all__ = ["ROUND_DURATION", "Freshness", "TopicFollower", "freshness", "lead"]

log = logging.getLogger(__name__)

_EXPIRE_EVERY: Final = 1.0  # seconds between expiries of the index
_RETRY: Final = 0.5  # seconds before trying again after Kafka failed a call
_OWN_RANGES: Final = 10_000  # own write ranges kept per partition, at most
_LEAD_ROUNDS: Final = 4.0  # a round ahead of need starts this many average rounds before the bound
_MIN_LEAD: Final = 0.02  # seconds: the least lead, whatever rounds have been taking
_AVERAGE_WEIGHT: Final = 0.2  # of the newest round in the moving average of their durations

ROUND_DURATION = Histogram(
    "kanal_ingress_deduplication_round_duration_seconds",
    "Rounds of the deduplication follower that completed, from asking Kafka for the end offsets "
    "of the deduplicating topics to having read up to them (a round ahead of need starts four "
    "average rounds before ingress_deduplication_max_staleness runs out)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class TopicFollower:
    """Follows the deduplicating topics into `index` (see the module docstring)."""

    def __init__(
        self, settings: Settings, index: IdIndex, *, timeout: float, max_staleness: float = 0.0
    ) -> None:
        self.index = index
        self._settings = settings
        self._timeout = timeout
        self._max_staleness = max_staleness
        # When (monotonic) the last round that completed began: the index holds every write
        # acknowledged before then. Reset when the topics followed change.
        self._fresh_as_of = float("-inf")
        # Until when a request is decided at once with no round to start (`ingress.dedup.Follower`):
        # while the last round is younger than the bound less the lead. Set by `_freshened`.
        self.fresh_until = float("-inf")
        self._current: asyncio.Future[None] | None = None  # the round under way
        self._current_began = float("-inf")
        # How long before the bound a round ahead of need starts: half the bound until rounds
        # have been timed (`_timed`).
        self._lead = max_staleness / 2
        self._round_time: float | None = None  # moving average of the rounds' durations, seconds
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._wanted: dict[str, float] = {}  # topic -> window in seconds
        self._partitions: dict[str, list[TopicPartition]] = {}  # the topics followed now
        self._positions: dict[TopicPartition, int] = {}  # next offset to index, per partition
        self._changed = asyncio.Event()  # `_wanted` differs from what is followed
        self._tick: asyncio.Future[None] | None = None  # done after the next fetch is indexed
        self._demand = asyncio.Event()  # a round is wanted
        self._next: asyncio.Future[None] | None = None  # the next round, once asked for
        # Per partition, the offset ranges [first, end) of this process's own acknowledged
        # writes at or past the follower's position, oldest first (see `written`).
        self._own: dict[TopicPartition, deque[tuple[int, int]]] = {}
        # Per partition, the offset the follower must read up to (set by rounds and at the
        # start of a window), and the partitions being fetched: the others are paused.
        self._targets: dict[TopicPartition, int] = {}
        self._fetching: set[TopicPartition] = set()
        self._wake = asyncio.Event()  # a target was set, or the topics changed

    # -- from the resource log (its listener; must not block) ---------------------------------

    def set_windows(self, windows: Mapping[str, tuple[Owner, float]]) -> None:
        """The topics to deduplicate now, each with its Broker or Channel and window."""
        self.index.set_windows(windows)
        wanted = {topic: seconds for topic, (_, seconds) in windows.items()}
        if wanted != self._wanted:
            self._wanted = wanted
            self._freshened(float("-inf"))  # a topic new to the index: no round has read it
            self._changed.set()
            self._wake.set()

    def written(self, topic: str, partition: int, first: int, count: int) -> None:
        """This process's sink had a batch acknowledged (`KafkaEventSink.written`). Its events are
        in the index or claimed by the requests storing them (`ingress.dedup`), so a round need
        not wait to read them back: with a single replica, a round waits for no fetch at all."""
        tp = TopicPartition(topic, partition)
        if tp not in self._positions:
            return
        ranges = self._own.setdefault(tp, deque())
        if len(ranges) >= _OWN_RANGES:
            ranges.popleft()  # the follower is far behind: those are read back instead
        ranges.append((first, first + count))

    def _covered(self, tp: TopicPartition, end: int) -> bool:
        """Whether the follower has read `tp` up to `end`, or what it has not read below `end` is
        this process's own writes. Moves the follower past its own writes where they come next,
        so the ranges kept stay few when nothing else is read (a single replica)."""
        self._past_own(tp, self._consumer)
        return self._positions.get(tp, end) >= end

    def _past_own(self, tp: TopicPartition, consumer: AIOKafkaConsumer | None) -> None:
        """Move past this process's own writes to `tp` where they come next: they are in the
        index or claimed already, and reading them back would cost as much CPU as taking them in."""
        position = self._positions.get(tp)
        ranges = self._own.get(tp)
        if position is None or not ranges:
            return
        skipped = position
        while ranges and ranges[0][0] <= skipped:
            skipped = max(skipped, ranges.popleft()[1])
        if skipped > position:
            self._positions[tp] = skipped
            if consumer is not None:
                with contextlib.suppress(KafkaError, AssertionError, ValueError):  # not assigned now
                    consumer.seek(tp, skipped)

    # -- the barrier ---------------------------------------------------------------------------

    def synced(self, arrived: float) -> asyncio.Future[None] | None:
        """None if the index is fresh enough for a request that `arrived` (time.monotonic());
        else the round to wait for. See the module docstring (and `ingress.dedup.Follower`)."""
        wait = freshness(arrived, self._max_staleness, self._fresh_as_of, self._current_began, self._lead)
        if wait is Freshness.FRESH:
            return None
        if wait is Freshness.FRESH_REFRESH:
            if self._next is None and self._current is None:
                self._next_round()  # ahead of need: nobody waits on it
            return None
        if wait is Freshness.CURRENT and self._current is not None:
            return self._current
        return self._next_round()

    def _next_round(self) -> asyncio.Future[None]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            self._demand.set()
        return self._next

    # -- running ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow and answer rounds until cancelled. No Kafka client is made before a Broker or
        Channel deduplicates (an ingress without any makes no more connections than before)."""
        while not self._wanted:
            self._changed.clear()
            await self._changed.wait()
        self._changed.set()
        while True:
            consumer = self._consumer = self._reader()
            # The rounds' ListOffsets go on a connection of their own: a broker answers the
            # requests of one connection in order, so behind the follower's fetch they would
            # wait out its fetch wait (all of it on the embedded broker, which answers a fetch
            # only when it expires).
            ends = self._reader()
            admin = self._admin = create_admin(self._settings)
            try:
                await consumer.start()
                await ends.start()
                await admin.start()
            except (KafkaError, OSError) as exc:
                log.warning("deduplication cannot reach Kafka yet: %s", exc)
                await _close(consumer, ends, admin)
                await asyncio.sleep(_RETRY * 4)
                continue
            break
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._follow(consumer))
                tg.create_task(self._rounds(ends))
                tg.create_task(self._expire())
        finally:
            if self._next is not None and not self._next.done():
                self._next.set_exception(Unavailable("the ingress is stopping"))
            await _close(consumer, ends, admin)

    def _reader(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.event_fetch_max_wait_ms(),
        )

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            if self._changed.is_set():
                self._changed.clear()
                try:
                    await self._reassign(consumer)
                except (KafkaError, OSError) as exc:
                    log.warning("cannot follow the deduplicating topics yet: %s", exc)
                    self._changed.set()
                    await asyncio.sleep(_RETRY)
                    continue
            if not self._positions:
                await self._changed.wait()
                continue
            self._skip_own(consumer)
            active = self._active(consumer)
            if not active:  # nothing to read for now: every round so far is answered
                self._ticked()
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                batches = await consumer.getmany(*active, timeout_ms=200)
            except KafkaError as exc:
                log.warning("reading the deduplicating topics failed: %s", exc)
                await asyncio.sleep(_RETRY)
                continue
            for tp, records in batches.items():
                if tp in self._positions and records:
                    self._index(tp.topic, records)
                    # max: a round may have moved it past own writes meanwhile (`_past_own`)
                    self._positions[tp] = max(self._positions[tp], records[-1].offset + 1)
            self._ticked()

    def _ticked(self) -> None:
        tick, self._tick = self._tick, None
        if tick is not None:
            tick.set_result(None)

    def _active(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        """The partitions to fetch now, the others paused: those a round (or the start of a
        window) needs read further than the follower is. So a replica that is the only writer
        fetches nothing but its window at start, and costs its broker no reads."""
        positions = self._positions
        self._targets = {
            tp: target for tp, target in self._targets.items() if positions.get(tp, target) < target
        }
        active = list(self._targets)
        if set(active) != self._fetching:
            consumer.pause(*[tp for tp in positions if tp not in self._targets])
            consumer.resume(*active)
            self._fetching = set(active)
        return active

    def _skip_own(self, consumer: AIOKafkaConsumer) -> None:
        """`_past_own` for every partition followed."""
        for tp in self._own:
            self._past_own(tp, consumer)

    def _index(self, topic: str, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        add = self.index.add
        self.index.reads += 1
        for record in records:
            source = event_id = None
            for name, value in record.headers:
                if name == "ce_id":
                    event_id = value
                elif name == "ce_source":
                    source = value
            if source is not None and event_id is not None:
                with contextlib.suppress(UnicodeDecodeError):  # not an event Kanal wrote
                    key = identity(
                        source.decode("utf-8", "surrogatepass"), event_id.decode("utf-8", "surrogatepass")
                    )
                    add(topic, key, record.timestamp)

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        """Follow the topics wanted now: the ones followed already from where they are, new
        ones from the start of their window."""
        assert self._admin is not None
        wanted = dict(self._wanted)
        for tp in list(self._positions):  # where each is, past any gap in its offsets
            with contextlib.suppress(KafkaError, AssertionError, ValueError):
                self._positions[tp] = max(self._positions[tp], await consumer.position(tp))
        new = [topic for topic in wanted if topic not in self._partitions]
        partitions = {topic: tps for topic, tps in self._partitions.items() if topic in wanted}
        if new:
            existing = set(await self._admin.list_topics())
            described = await self._admin.describe_topics([t for t in new if t in existing])
            for topic in described:
                numbers = sorted(int(p["partition"]) for p in topic.get("partitions") or ())
                if not topic.get("error_code") and numbers:
                    partitions[topic["topic"]] = [TopicPartition(topic["topic"], n) for n in numbers]
            if any(topic not in partitions for topic in new):
                self._changed.set()  # not there yet (created just now): again after a pause
                await asyncio.sleep(_RETRY)
        every = [tp for tps in partitions.values() for tp in tps]
        consumer.assign(every)
        positions = {tp: self._positions[tp] for tp in every if tp in self._positions}
        fresh = [tp for tp in every if tp not in positions]
        if fresh:
            now_ms = int(time.time() * 1000)
            starts = {tp: now_ms - int(wanted[tp.topic] * 1000) for tp in fresh}
            found = await consumer.offsets_for_times(starts)
            missing = [tp for tp in fresh if found.get(tp) is None]
            ends = await consumer.end_offsets(missing) if missing else {}
            for tp in fresh:
                hit = found.get(tp)
                positions[tp] = hit.offset if hit is not None else ends[tp]
            # The window is read at once, before any request asks for it.
            windows_end = await consumer.end_offsets(fresh)
            self._targets.update((tp, windows_end[tp]) for tp in fresh if windows_end[tp] > positions[tp])
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        self._partitions = partitions
        self._positions = positions
        self._fetching = set(every)  # assign() resumed every partition
        self._targets = {tp: target for tp, target in self._targets.items() if tp in positions}
        self._own = {tp: ranges for tp, ranges in self._own.items() if tp in positions}
        log.info(
            "deduplication follows %d topics (%d partitions)%s",
            len(partitions),
            len(every),
            f", reading {len(fresh)} partitions from the start of their window" if fresh else "",
        )

    async def _rounds(self, ends: AIOKafkaConsumer) -> None:
        while True:
            await self._demand.wait()
            self._demand.clear()
            round_, self._next = self._next, None
            if round_ is None:
                continue
            began, fresh_as_of = time.monotonic(), self._fresh_as_of
            self._current, self._current_began = round_, began
            try:
                async with asyncio.timeout(self._timeout):
                    await self._read_to_ends(ends)
            except asyncio.CancelledError:  # stopping: its requests get their 503 now
                round_.set_exception(Unavailable("the ingress is stopping"))
                raise
            except (TimeoutError, KafkaError) as exc:
                reason = "Kafka did not answer" if isinstance(exc, TimeoutError) else str(exc)
                round_.set_exception(
                    Unavailable(
                        f"the deduplication index did not catch up within {self._timeout:g} s ({reason})"
                    )
                )
            else:
                # Unless the topics changed meanwhile (which reset it): then this round may have
                # read a topic only in part, and the next one must be waited for.
                self._timed(time.monotonic() - began)
                if self._fresh_as_of == fresh_as_of:
                    self._freshened(began)
                round_.set_result(None)
            finally:
                self._current, self._current_began = None, float("-inf")

    def _timed(self, duration: float) -> None:
        """A round completed in `duration` seconds: the lead follows the moving average."""
        ROUND_DURATION.observe(duration)
        average = self._round_time
        average = duration if average is None else average + _AVERAGE_WEIGHT * (duration - average)
        self._round_time = average
        self._lead = lead(self._max_staleness, average)
        self._freshened(self._fresh_as_of)

    def _freshened(self, fresh_as_of: float) -> None:
        """The index holds every write acknowledged before `fresh_as_of` (time.monotonic())."""
        self._fresh_as_of = fresh_as_of
        if self._max_staleness > 0:
            self.fresh_until = fresh_as_of + self._max_staleness - self._lead

    async def _read_to_ends(self, reader: AIOKafkaConsumer) -> None:
        while self._changed.is_set() or set(self._partitions) != set(self._wanted):
            await self._next_tick()  # a topic just turned on: follow it first
        partitions = list(self._positions)
        if not partitions:
            return
        ends = await reader.end_offsets(partitions)
        while True:
            behind = [tp for tp in partitions if tp in self._positions and not self._covered(tp, ends[tp])]
            if not behind:
                return
            consumer = self._consumer
            for tp in behind:  # past a gap in the offsets (none in an event topic, but cheap)
                with contextlib.suppress(KafkaError, AssertionError, ValueError):
                    if consumer is not None:
                        self._positions[tp] = max(self._positions[tp], await consumer.position(tp))
            behind = [tp for tp in behind if tp in self._positions and not self._covered(tp, ends[tp])]
            if not behind:
                return
            for tp in behind:
                self._targets[tp] = max(self._targets.get(tp, 0), ends[tp])
            self._wake.set()
            await self._next_tick()

    async def _next_tick(self) -> None:
        if self._tick is None:
            self._tick = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._tick)

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(_EXPIRE_EVERY)
            self.index.expire()


class Freshness(enum.Enum):
    """What a request that arrived needs of the follower (`freshness`)."""

    FRESH = "fresh"  # decide at once
    FRESH_REFRESH = "fresh-refresh"  # decide at once, and start a round ahead of need
    CURRENT = "current"  # wait for the round under way: it began late enough
    NEXT = "next"  # wait for the next round


def freshness(
    arrived: float, max_staleness: float, fresh_as_of: float, current_began: float, lead: float
) -> Freshness:
    """Whether a request that `arrived` may use the index as it is: yes if the last round that
    completed began at most `max_staleness` before it (0: only a round that began after it
    arrived will do, so never), with a round started ahead of need once that one is older than
    `max_staleness - lead`; if not, whether the round under way began late enough to wait for it."""
    if max_staleness > 0:
        age = arrived - fresh_as_of
        if age <= max_staleness:
            return Freshness.FRESH if age <= max_staleness - lead else Freshness.FRESH_REFRESH
        if current_began >= arrived - max_staleness:
            return Freshness.CURRENT
    return Freshness.NEXT


def lead(max_staleness: float, round_time: float) -> float:
    """How long before the staleness bound a round ahead of need starts, for rounds that take
    `round_time` on average: `_LEAD_ROUNDS` of them, within [`_MIN_LEAD`, half the bound]."""
    return min(max_staleness / 2, max(_MIN_LEAD, _LEAD_ROUNDS * round_time))


async def _close(consumer: AIOKafkaConsumer, ends: AIOKafkaConsumer, admin: AIOKafkaAdminClient) -> None:
    for reader in (consumer, ends):
        with contextlib.suppress(KafkaError):
            await reader.stop()
    with contextlib.suppress(KafkaError):
        await admin.close()
