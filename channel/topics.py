"""Reading a stretch of a topic's log, outside any consumer group: for replay and dead letters.

`TopicRange` reads every partition of a topic from a start (the beginning, a time through the
broker's time index, or given offsets) up to an end (a time, or the end of the log as it was when
reading began) and stops by itself. It never joins a consumer group and never commits, so running
dispatchers are not affected by it. The end of the log is taken from fetch responses' high
watermarks, which every Kafka-protocol broker reports correctly. Times are applied to each
record's timestamp as well: the broker's time index only says where to begin reading, and some
brokers (the embedded one) answer with an offset before the time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from channel.errors import NotFound
from channel.kafka import client_options, create_admin
from channel.settings import Settings

__all__ = ["RangeStart", "TopicRange"]


@dataclass(frozen=True, slots=True)
class RangeStart:
    """Where to start: at a time (ms), at one offset on every partition, at offsets per partition
    (others from the beginning), or from the beginning when none is given."""

    time_ms: int | None = None
    offset: int | None = None
    offsets: Mapping[int, int] = field(default_factory=dict)


class TopicRange:
    def __init__(
        self, settings: Settings, topic: str, start: RangeStart | None = None, until_ms: int | None = None
    ) -> None:
        self._settings = settings
        self.topic = topic
        self._start = start or RangeStart()
        self._until_ms = until_ms
        self.begin: dict[TopicPartition, int] = {}
        self.stop: dict[TopicPartition, int] = {}  # exclusive; known once the end was seen
        self.read = 0  # records in the range, yielded
        self.scanned = 0  # records looked at (out-of-range times included): progress against `total`

    @property
    def total(self) -> int | None:
        """Records to look at, once the end of every partition is known."""
        if len(self.stop) < len(self.begin):
            return None
        return sum(max(0, self.stop[tp] - self.begin[tp]) for tp in self.begin)

    async def records(self) -> AsyncIterator[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            partitions = await self._partitions()
            consumer.assign(partitions)
            partitions = await self._seek_start(consumer, partitions)
            since, until = self._start.time_ms, self._until_ms
            open_parts = set(partitions)
            empty_polls = dict.fromkeys(partitions, 0)
            while open_parts:
                batches = await consumer.getmany(*open_parts, timeout_ms=500, max_records=1000)
                for tp in list(open_parts):
                    if tp not in self.stop:
                        high = consumer.highwater(tp)
                        if high is not None:
                            self.stop[tp] = high
                    for record in batches.get(tp, ()):
                        if tp in self.stop and record.offset >= self.stop[tp]:
                            break
                        self.scanned += 1
                        if (since is not None and record.timestamp < since) or (
                            until is not None and record.timestamp >= until
                        ):
                            continue
                        self.read += 1
                        yield record
                    position = await consumer.position(tp)
                    if tp in self.stop and position >= self.stop[tp]:
                        open_parts.discard(tp)
                    elif not batches.get(tp):
                        empty_polls[tp] += 1
                        if empty_polls[tp] >= 3 and tp not in self.stop:
                            # Nothing there, and no high watermark reported: an empty partition.
                            self.stop[tp] = position
                            open_parts.discard(tp)
        finally:
            await consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        # Asked of the broker for this topic: a consumer that subscribes to nothing holds no
        # topic's partitions in its metadata (Apache Kafka answers a metadata request for no
        # topics with none; the embedded broker answered with all of them). Listed first: a
        # metadata request naming a topic that does not exist creates it on a broker with
        # auto.create.topics.enable.
        admin = create_admin(self._settings)
        await admin.start()
        try:
            if self.topic not in await admin.list_topics():
                raise NotFound(f"topic {self.topic} does not exist")
            [described] = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        numbers = sorted(int(p["partition"]) for p in described.get("partitions") or ())
        if described.get("error_code") or not numbers:
            raise NotFound(f"topic {self.topic} has no partitions")
        return [TopicPartition(self.topic, p) for p in numbers]

    async def _seek_start(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition]:
        """Position each partition at the start; the partitions that have anything to read."""
        start = self._start
        if start.time_ms is not None:
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, start.time_ms))
            # A partition with no record at or after the time has nothing in the range. (Not
            # "seek to the end": some brokers report the end of a multi-record batch wrongly.)
            partitions = [tp for tp in partitions if found.get(tp) is not None]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, found[tp].offset)
        else:
            await consumer.seek_to_beginning(*partitions)
            for tp in partitions:
                offset = start.offsets.get(tp.partition, start.offset)
                if offset is not None:
                    consumer.seek(tp, offset)
        for tp in partitions:
            self.begin[tp] = await consumer.position(tp)
        return partitions
