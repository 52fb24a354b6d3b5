"""The PingSource scheduler: each Ready PingSource's event, once per tick, from one controller.

Who schedules: the controllers of a deployment are members of one Kafka consumer group on the
one-partition ticks topic (`KANAL_KAFKA_TICKS_TOPIC`); the member that holds the partition is
the scheduler, the others stand by. When it stops or dies, Kafka gives the partition to another
member, which takes over. Before each send the scheduler checks that it still holds the partition.

What was sent: after a tick's event was answered (or its retries ran out), the scheduler writes
the tick's time to the ticks topic (compacted, keyed by the PingSource's uid). A scheduler that
takes over reads that topic first, so it neither repeats nor skips ticks. Ticks missed while no
scheduler ran are sent late, with their scheduled `time`, when they are at most
`KANAL_PING_CATCH_UP` seconds old; older ones are skipped with a warning (Knative sends none).

One window remains: a scheduler killed after its event was accepted and before the tick was
written sends that tick again after the take-over. The event id is derived from the source's
uid and the tick time, so the repeat has the same id and sinks can drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from channel.control.log import ResourceLog, ResourceWriter
from channel.errors import Unavailable
from channel.events import CloudEvent, to_http_binary
from channel.kafka import client_options
from channel.resources.model import PingSource
from channel.settings import Settings
from channel.sources.schedule import Schedule

__all__ = ["PING_TYPE", "PingScheduler", "due_ticks", "ping_event"]

log = logging.getLogger(__name__)

PING_TYPE = "dev.knative.sources.ping"
_ATTEMPTS = 4
_TIMEOUT = 10.0

PINGS = Counter(
    "kanal_ping_events",
    "PingSource events, by outcome: sent, failed (retries exhausted), skipped (too late to send)",
    ["namespace", "source", "outcome"],
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{moment.microsecond:06d}Z" if moment.microsecond else "Z"
    )


def ping_event(source: PingSource, tick: datetime) -> CloudEvent:
    """The event of one tick: id from the source's uid and the tick, `time` the tick."""
    meta = source.metadata
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kanal:pingsource:{meta.uid}:{_iso(tick)}")),
        "source": f"/apis/v1/namespaces/{meta.namespace}/pingsources/{meta.name}",
        "type": PING_TYPE,
        "time": _iso(tick),
    }
    spec = source.spec
    if spec.content_type:
        attributes["datacontenttype"] = spec.content_type
    if spec.ce_overrides is not None:
        for name, value in spec.ce_overrides.extensions.items():
            attributes.setdefault(name, value)
    return CloudEvent(attributes, spec.payload())


def due_ticks(
    schedule: Schedule, last: datetime | None, created: datetime, now: datetime, catch_up: float
) -> tuple[list[datetime], int]:
    """The ticks to send now (oldest first) and how many were too old to send."""
    after = last if last is not None else created
    ticks = schedule.ticks_between(after, now)
    oldest = now - timedelta(seconds=catch_up)
    keep = [t for t in ticks if t >= oldest]
    return keep, len(ticks) - len(keep)


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Owner(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scheduler: PingScheduler) -> None:
        self._scheduler = scheduler

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._scheduler._set_owner(False)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._scheduler._set_owner(bool(list(assigned)))


class PingScheduler:
    """Sends PingSource events on schedule while this process holds the ticks partition."""

    def __init__(
        self,
        settings: Settings,
        sources: Callable[[], Iterable[PingSource]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._clock = clock
        self._topic = settings.kafka_ticks_topic
        self._tp = TopicPartition(self._topic, 0)
        self._ticks = ResourceLog(settings, topic=self._topic)
        self._writer = ResourceWriter(settings, topic=self._topic)
        self._owner = False
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._schedules: dict[tuple[str, str | None], Schedule] = {}

    @property
    def owner(self) -> bool:
        return self._owner

    def _set_owner(self, owner: bool) -> None:
        if owner != self._owner:
            log.info("ping scheduler: %s", "scheduling PingSources" if owner else "standing by")
        self._owner = owner
        if owner and self._consumer is not None:
            self._consumer.pause(self._tp)  # membership is all this consumer is for

    def stop(self) -> None:
        """Stop after the tick being sent (if any) is recorded, so a graceful stop repeats none."""
        self._stopping.set()

    def _holds_partition(self) -> bool:
        consumer = self._consumer
        return self._owner and consumer is not None and self._tp in consumer.assignment()

    async def run(self) -> None:
        await self._ticks.start()
        await self._writer.start()
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=f"{self._topic}.scheduler",
            enable_auto_commit=False,
            **self._settings.group_options(),
        )
        self._consumer = consumer
        try:
            await consumer.start()
            consumer.subscribe([self._topic], listener=_Owner(self))
            async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tasks:
                follower = tasks.create_task(self._ticks.run())
                try:
                    while not self._stopping.is_set():
                        with contextlib.suppress(KafkaError):
                            await consumer.getmany(timeout_ms=200)
                        if self._holds_partition() and self._ticks.loaded.is_set():
                            await self._ticks.caught_up()
                            await self._step(session)
                finally:
                    follower.cancel()
        finally:
            self._owner = False
            self._consumer = None
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            await self._writer.close()
            await self._ticks.close()

    def _schedule(self, source: PingSource) -> Schedule:
        key = (source.spec.schedule, source.spec.timezone)
        found = self._schedules.get(key)
        if found is None:
            found = self._schedules[key] = Schedule(*key)
        return found

    def _last_tick(self, source: PingSource) -> datetime | None:
        doc: Mapping[str, Any] | None = self._ticks.documents.get(source.metadata.uid)
        if not doc:
            return None
        return _parse_time(str(doc.get("tick", "")))

    async def _step(self, session: aiohttp.ClientSession) -> None:
        now = self._clock()
        work = []
        for source in self._sources():
            if not source.status.ready or not source.status.sink_uri or not source.metadata.uid:
                continue
            created = _parse_time(source.metadata.creation_timestamp) or now
            ticks, skipped = due_ticks(
                self._schedule(source), self._last_tick(source), created, now, self._settings.ping_catch_up
            )
            if skipped:
                log.warning(
                    "pingsource %s/%s: %d ticks older than %ss were missed and are skipped",
                    source.metadata.namespace,
                    source.metadata.name,
                    skipped,
                    self._settings.ping_catch_up,
                )
                PINGS.labels(source.metadata.namespace, source.metadata.name, "skipped").inc(skipped)
            if ticks:
                work.append(self._send_ticks(session, source, ticks))
        if work:
            await asyncio.gather(*work)

    async def _send_ticks(
        self, session: aiohttp.ClientSession, source: PingSource, ticks: list[datetime]
    ) -> None:
        for tick in ticks:
            if not self._holds_partition() or self._stopping.is_set():
                return  # another controller takes over; it will send what is left
            outcome = await self._send(session, source, tick)
            PINGS.labels(source.metadata.namespace, source.metadata.name, outcome).inc()
            try:
                await self._writer.write(
                    [(source.metadata.uid, {"tick": _iso(tick), "source": source.key, "outcome": outcome})]
                )
            except Unavailable as exc:
                log.warning("cannot record the tick of %s: %s; it will be sent again", source.key, exc)
                return
            # Read our own write before the next step looks at the last tick.
            await self._ticks.caught_up()

    async def _send(self, session: aiohttp.ClientSession, source: PingSource, tick: datetime) -> str:
        event = ping_event(source, tick)
        headers, body = to_http_binary(event)
        url = source.status.sink_uri or ""
        delay = 0.5
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with (
                    asyncio.timeout(_TIMEOUT),
                    session.post(url, data=body, headers=headers, allow_redirects=False) as response,
                ):
                    await response.read()
                    if 200 <= response.status < 300:
                        log.info(
                            "ping %s id=%s time=%s -> %s", source.key, event.id, event.attributes["time"], url
                        )
                        return "sent"
                    problem = f"HTTP {response.status}"
                    if 400 <= response.status < 500 and response.status not in (404, 408, 409, 429):
                        break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < _ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("ping %s id=%s to %s failed: %s", source.key, event.id, url, problem)
        return "failed"
