"""The resource log: Kanal's only state, kept in Kafka.

Every resource (spec and status) is one record in a compacted, single-partition topic, keyed by
``Kind/namespace/name``; a delete is a tombstone. The controller is the writer; the ingress and
every dispatcher are followers that replay the topic from the beginning and then follow it, so
they apply a change within one fetch and need no restart, and restarting every Kanal process
loses nothing. There is no blob with a size cliff: each resource is its own record.

A write of several resources goes out as one record batch to the one partition, which Kafka
appends atomically: an apply is never half-visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from channel.errors import AccessDenied, Problem, Unavailable, ValidationError
from channel.kafka import client_options, create_admin, create_producer, ensure_topic
from channel.settings import Settings

__all__ = ["ResourceLog", "ResourceWriter", "ensure_resources_topic"]

log = logging.getLogger(__name__)

Documents = dict[str, dict[str, Any]]
Listener = Callable[[Mapping[str, dict[str, Any]], frozenset[str]], None]


async def ensure_resources_topic(settings: Settings, topic: str | None = None) -> None:
    """Create the compacted resources topic (or another log `topic`) if it does not exist yet.

    Raises AccessDenied if Kanal may not create or describe it: a follower without DESCRIBE
    would otherwise wait forever for the topic's partitions."""
    name = topic or settings.kafka_resources_topic
    admin = create_admin(settings)
    await admin.start()
    try:
        await ensure_topic(
            admin,
            name,
            partitions=1,
            replication_factor=settings.kafka_topic_replication_factor,
            config={"cleanup.policy": "compact"},
        )
        [described] = await admin.describe_topics([name])
    except TopicAuthorizationFailedError as exc:
        raise AccessDenied(f"not authorized to create topic {name}") from exc
    finally:
        await admin.close()
    if described["error_code"] == TopicAuthorizationFailedError.errno:
        raise AccessDenied(f"not authorized to describe topic {name}")


class ResourceLog:
    """Follows the resource topic and keeps the newest document of every resource in memory.

    `listener(documents, changed_keys)` is called after each fetch that changed something, and
    once when the log is loaded (with every key). It must not block.
    """

    def __init__(
        self, settings: Settings, listener: Listener | None = None, *, topic: str | None = None
    ) -> None:
        self._settings = settings
        self._listener = listener
        self._topic = topic or settings.kafka_resources_topic
        self._tp = TopicPartition(self._topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self.documents: Documents = {}
        self.loaded = asyncio.Event()
        self._changed = asyncio.Condition()
        self.position = 0
        self.fetches = 0  # completed fetch rounds, for `caught_up`
        self.last_fetch_ok = 0.0  # time.monotonic() of the last successful fetch

    async def start(self) -> None:
        await ensure_resources_topic(self._settings, self._topic)
        self._consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )
        await self._consumer.start()
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_beginning(self._tp)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> ResourceLog:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def run(self) -> None:
        """Follow the log until cancelled."""
        assert self._consumer is not None, "start() first"
        consumer = self._consumer
        while True:
            try:
                batches = await consumer.getmany(self._tp, timeout_ms=200, max_records=10_000)
            except TopicAuthorizationFailedError as exc:
                raise AccessDenied(f"not authorized to read topic {self._topic}") from exc
            except KafkaError as exc:
                log.warning("resource log fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self.last_fetch_ok = time.monotonic()
            changed: set[str] = set()
            for record in batches.get(self._tp, ()):
                key = record.key.decode() if record.key else ""
                if not key:
                    continue
                if record.value is None:
                    self.documents.pop(key, None)
                else:
                    try:
                        self.documents[key] = json.loads(record.value)
                    except ValueError:
                        log.error("resource log record %d (%s) is not JSON; ignored", record.offset, key)
                        continue
                changed.add(key)
            self.position = await consumer.position(self._tp)
            if not self.loaded.is_set() and await self._caught_up(consumer, bool(batches)):
                self.loaded.set()
                log.info("resource log loaded: %d resources", len(self.documents))
                changed = set(self.documents)
                self._notify(changed, force=True)
            elif changed and self.loaded.is_set():
                self._notify(changed)
            self.fetches += 1
            async with self._changed:
                self._changed.notify_all()

    async def _caught_up(self, consumer: AIOKafkaConsumer, fetched: bool) -> bool:
        highwater = consumer.highwater(self._tp)
        if highwater is not None:
            return bool(self.position >= highwater)
        if fetched:
            return False
        # An empty fetch on a topic never written to reports no high watermark.
        ends = await consumer.end_offsets([self._tp])
        return bool(self.position >= ends[self._tp])

    def _notify(self, changed: set[str], force: bool = False) -> None:
        if self._listener is not None and (changed or force):
            try:
                self._listener(self.documents, frozenset(changed))
            except Exception:
                log.exception("resource listener failed")

    def healthy(self, max_age: float = 10.0) -> bool:
        """Loaded, and Kafka answered a fetch within `max_age` seconds."""
        return self.loaded.is_set() and time.monotonic() - self.last_fetch_ok < max_age

    async def caught_up(self, timeout: float = 1.0) -> None:
        """Wait for two more fetch rounds: the second began after this call, so whatever was
        written before the call has been read. Bounded; a timeout is not an error here."""
        target = self.fetches + 2
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.fetches >= target)
        except TimeoutError:
            pass

    async def wait_for_offset(self, offset: int, timeout: float = 10.0) -> None:
        """Wait until the log has been read past `offset` (read-your-writes for the controller)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.position > offset)


_MAX_APPLY_BYTES = 900 * 1024  # under Kafka's default message.max.bytes (1 MiB)


class ResourceWriter:
    """Writes resource documents (or tombstones) to the log, all of one call atomically."""

    def __init__(self, settings: Settings, *, topic: str | None = None) -> None:
        self._settings = settings
        self._topic = topic or settings.kafka_resources_topic
        # One apply is one batch, so that it is atomic: let a batch be as large as a request.
        self._producer: AIOKafkaProducer = create_producer(settings, max_batch_size=_MAX_APPLY_BYTES)

    async def start(self) -> None:
        # The writer may come up before any follower: where Kafka does not create topics on
        # first use (Apache Kafka as Kanal's compose file runs it), the first apply would wait
        # for a topic that never comes.
        await ensure_resources_topic(self._settings, self._topic)
        await self._producer.start()

    async def close(self) -> None:
        # Also when never started: aiokafka warns of a producer that was made and not stopped.
        with contextlib.suppress(KafkaError):
            await self._producer.stop()

    async def write(self, records: Sequence[tuple[str, dict[str, Any] | None]]) -> int:
        """Append the records as one batch; returns the offset of the last one."""
        if not records:
            return -1
        batch = self._producer.create_batch()
        for key, doc in records:
            value = None if doc is None else json.dumps(doc, separators=(",", ":")).encode()
            if batch.append(key=key.encode(), value=value, timestamp=None) is None:
                raise ValidationError(
                    [
                        Problem(
                            "",
                            f"{len(records)} resources are more than one apply can hold "
                            f"({_MAX_APPLY_BYTES // 1024} KiB); apply them in several parts",
                        )
                    ]
                )
        batch.close()
        try:
            async with asyncio.timeout(self._settings.kafka_produce_timeout * 2):
                future = await self._producer.send_batch(batch, self._topic, partition=0)
                metadata = await future
        except (KafkaError, TimeoutError) as exc:
            raise Unavailable(f"cannot write to the resource log: {exc}") from exc
        return int(metadata.offset) + len(records) - 1
