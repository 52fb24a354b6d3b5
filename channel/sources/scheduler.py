"""The PingSource scheduler: each Ready PingSource's event, once per tick, from one controller.

Who schedules: the controllers of a deployment are members of one Kafka consumer group on the
one-partition ticks topic (`KANAL_KAFKA_TICKS_TOPIC`); the member that holds the partition is
the scheduler, the others stand by. When it stops or dies, Kafka gives the partition to another
member, which takes over. Before each tick the scheduler checks that it still holds the partition.

What was sent: after a tick's event was answered (or its retries ran out), the scheduler writes
the tick's time to the ticks topic (compacted, keyed by the PingSource's uid). A scheduler that
takes over first reads that topic to its end, so it neither repeats nor skips a tick. Which ticks
are due and what they carry is decided in `channel.sources.ping`.

Hand-over: when Kafka moves the partition (a replica joins or leaves), the member losing it
finishes and records the ticks it is sending before it lets the rebalance go on (aiokafka waits
for `on_partitions_revoked`), so a graceful hand-over repeats nothing. One window remains: a
scheduler killed (or cut off from Kafka long enough to be expelled from the group) after its
event was accepted and before the tick was recorded; its successor sends that tick again, with
the same event id, so sinks can drop the repeat.

Each source is sent by a task of its own, so a slow or failing sink delays only its own ticks.
Sinks follow the destination policy as deliveries do (`channel.destinations`): a name is
resolved and checked before aiohttp connects to the addresses checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from channel.control.log import ResourceLog, ResourceWriter
from channel.destinations import DestinationPolicy, refusal
from channel.errors import Unavailable
from channel.events import to_http_binary
from channel.kafka import access_denied, client_options
from channel.proxy import Proxies
from channel.resources.model import PingSource
from channel.settings import Settings
from channel.sources.ping import due_ticks, format_time, parse_time, ping_event
from channel.sources.schedule import Schedule

__all__ = ["PingScheduler", "sink_session"]

log = logging.getLogger(__name__)

_ATTEMPTS = 4  # one send and three retries, 0.5 s, 1 s, 2 s apart
_TIMEOUT = 10.0  # seconds per attempt
_HANDOVER_TIMEOUT = 60.0  # longer than a send with all its retries
_CLEANUP_INTERVAL = 60.0  # seconds between looks for tick records of deleted sources
_RETRYABLE_4XX = frozenset({404, 408, 409, 429})  # as the dispatcher retries them

PINGS = Counter(
    "kanal_ping_events",
    "PingSource events, by outcome: sent, failed (retries exhausted), skipped (too late to send)",
    ["namespace", "source", "outcome"],
)


class _CheckedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name any of whose addresses the destination policy denies;
    aiohttp connects to the addresses returned, so only checked ones. A proxy's own address
    (`exempt`) is the operator's choice and not checked."""

    def __init__(self, policy: DestinationPolicy, exempt: frozenset[tuple[str, int]]) -> None:
        self._policy = policy
        self._exempt = exempt
        self._resolver = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        if (host, port) not in self._exempt:
            ips = (ipaddress.ip_address(result["host"]) for result in found)
            denied = self._policy.denied_addresses(host, port, ips)
            if denied is not None:
                # aiohttp shows an OSError by its strerror.
                raise OSError(errno.EACCES, refusal(host, port, denied[1], denied[0]))
        return found

    async def close(self) -> None:
        await self._resolver.close()


def sink_session(policy: DestinationPolicy, proxies: Proxies | None) -> aiohttp.ClientSession:
    """A session whose connections go only where `policy` allows: names are resolved and checked
    by its resolver (addresses written in a URL are the caller's to check, `denied_url`)."""
    configured = [p for p in (proxies.http, proxies.https) if p] if proxies is not None else []
    resolver = _CheckedResolver(policy, frozenset((p.host, p.port) for p in configured))
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))


class _Membership(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, scheduler: PingScheduler) -> None:
        self._scheduler = scheduler

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._scheduler._release()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._scheduler._acquire(bool(list(assigned)))


class PingScheduler:
    """Sends PingSource events on schedule while this process holds the ticks partition.

    `sources()` gives the current PingSources (the controller's view); `clock()` the time;
    `live_uids()` the uids of every stored PingSource, or None while they are not known yet
    (the tick records of the others are deleted).
    """

    def __init__(
        self,
        settings: Settings,
        sources: Callable[[], Iterable[PingSource]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        live_uids: Callable[[], Collection[str] | None] | None = None,
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._clock = clock
        # Sinks outside the cluster are reached through the environment's proxy, as deliveries are.
        self._proxies = Proxies.from_environment(os.environ)
        self._policy = DestinationPolicy.from_settings(settings)
        self._live_uids = live_uids or (lambda: {source.metadata.uid for source in sources()})
        self._next_cleanup = 0.0
        self._topic = settings.kafka_ticks_topic
        self._tp = TopicPartition(self._topic, 0)
        self._ticks = ResourceLog(settings, topic=self._topic)
        self._writer = ResourceWriter(settings, topic=self._topic)
        self._consumer: AIOKafkaConsumer | None = None
        self._owner = False
        self._loaded = False  # the ticks topic was read to its end since this process became owner
        self._stopping = asyncio.Event()
        self._schedules: dict[tuple[str, str | None], Schedule] = {}
        self._handled: dict[str, datetime] = {}  # uid -> last tick this process sent or skipped
        self._busy: dict[str, asyncio.Task[None]] = {}  # uid -> the task sending its ticks
        self._next: dict[str, tuple[tuple[str, str | None, datetime], datetime]] = {}  # uid -> next tick

    @property
    def owner(self) -> bool:
        """Whether this process is the one scheduling PingSources."""
        return self._owner

    def stop(self) -> None:
        """Stop after the ticks being sent are recorded, so a graceful stop repeats none."""
        self._stopping.set()

    def _acquire(self, assigned: bool) -> None:
        if assigned and not self._owner:
            log.info("ping scheduler: this controller schedules PingSources")
            self._loaded = False
        self._owner = assigned
        if assigned and self._consumer is not None:
            self._consumer.pause(self._tp)  # membership is all this consumer is for

    async def _release(self) -> None:
        if self._owner:
            log.info("ping scheduler: handing over")
        self._owner = False
        busy = [task for task in self._busy.values() if not task.done()]
        if busy:
            # Each task stops after its current tick; recording it before the partition moves
            # is what keeps the next owner from sending it again.
            await asyncio.wait(busy, timeout=_HANDOVER_TIMEOUT)

    def _holds_partition(self) -> bool:
        consumer = self._consumer
        return self._owner and consumer is not None and self._tp in consumer.assignment()

    async def run(self) -> None:
        """Take part in the election and schedule while elected, until `stop()`."""
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            group_id=f"{self._topic}.scheduler",
            enable_auto_commit=False,
            **self._settings.group_options(),
        )
        self._consumer = consumer
        try:
            await self._ticks.start()
            await self._writer.start()
            await consumer.start()
            consumer.subscribe([self._topic], listener=_Membership(self))
            session = sink_session(self._policy, self._proxies)
            async with session, asyncio.TaskGroup() as tasks:
                follower = tasks.create_task(self._ticks.run())
                try:
                    while not self._stopping.is_set():
                        # Polling keeps the membership alive; it returns nothing (paused).
                        try:
                            async with asyncio.timeout(1.0):
                                await consumer.getmany(timeout_ms=200)
                        except (KafkaError, TimeoutError) as exc:
                            # A missing ACL would leave this controller out of the election for
                            # good, and PingSources unscheduled without a word.
                            if (denied := access_denied(exc)) is not None:
                                raise denied from exc
                        if self._holds_partition() and await self._load(consumer):
                            self._start_due(session, tasks)
                            await self._forget_deleted()
                finally:
                    follower.cancel()
        finally:
            self._owner = False
            self._consumer = None
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            await self._writer.close()
            await self._ticks.close()

    async def _load(self, consumer: AIOKafkaConsumer) -> bool:
        """Read the ticks topic to its end once after becoming owner: the previous owner's last
        records were written before it let go of the partition, so they are all before the end."""
        if self._loaded:
            return True
        try:
            end = (await consumer.end_offsets([self._tp]))[self._tp]
            if end > 0:
                await self._ticks.wait_for_offset(end - 1, timeout=5.0)
        except (KafkaError, TimeoutError) as exc:
            log.warning("ping scheduler: cannot read the ticks topic yet: %s", exc)
            return False
        self._loaded = True
        return True

    async def _forget_deleted(self) -> None:
        """Now and then, delete the tick records of PingSources that no longer exist."""
        if time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + _CLEANUP_INTERVAL
        live = self._live_uids()
        if live is None:
            return
        stale = [uid for uid in self._ticks.documents if uid not in live and uid not in self._busy]
        if not stale:
            return
        try:
            await self._writer.write([(uid, None) for uid in stale])
        except Unavailable as exc:
            log.warning("ping scheduler: cannot delete %d old tick records: %s", len(stale), exc)
            return
        for uid in stale:
            self._handled.pop(uid, None)
        log.info("ping scheduler: deleted the tick records of %d deleted PingSources", len(stale))

    def _schedule(self, source: PingSource) -> Schedule:
        key = (source.spec.schedule, source.spec.timezone)
        found = self._schedules.get(key)
        if found is None:
            found = self._schedules[key] = Schedule(*key)
        return found

    def _last_tick(self, source: PingSource) -> datetime | None:
        uid = source.metadata.uid
        doc: Mapping[str, Any] | None = self._ticks.documents.get(uid)
        recorded = parse_time(str(doc.get("tick", ""))) if doc else None
        known = [t for t in (recorded, self._handled.get(uid)) if t is not None]
        return max(known) if known else None

    def _start_due(self, session: aiohttp.ClientSession, tasks: asyncio.TaskGroup) -> None:
        now = self._clock()
        seen: set[str] = set()
        for source in self._sources():
            uid = source.metadata.uid
            seen.add(uid)
            if uid in self._busy or not uid or not source.status.ready or not source.status.sink_uri:
                continue
            created = parse_time(source.metadata.creation_timestamp) or now
            last = self._last_tick(source)
            if now < self._next_tick(source, last or created):
                continue  # the common case, without a walk through the schedule
            due = due_ticks(self._schedule(source), last, created, now, self._settings.ping_catch_up)
            if due.skipped_until is not None:
                log.warning(
                    "pingsource %s: %d%s ticks older than %ss were missed and are skipped (up to %s)",
                    source.key,
                    due.skipped,
                    "+" if due.skipped >= 10_000 else "",
                    self._settings.ping_catch_up,
                    format_time(due.skipped_until),
                )
                PINGS.labels(source.metadata.namespace, source.metadata.name, "skipped").inc(due.skipped)
                self._handled[uid] = due.skipped_until
            if due.send:
                work = self._send_ticks(session, source, due.send)
            elif due.skipped_until is not None:
                work = self._record(source, due.skipped_until, "skipped")
            else:
                continue
            task = tasks.create_task(work)
            self._busy[uid] = task
            task.add_done_callback(functools.partial(self._done, uid))
        for uid in self._next.keys() - seen:
            del self._next[uid]

    def _next_tick(self, source: PingSource, after: datetime) -> datetime:
        """The source's first tick after `after`, computed once per (schedule, after)."""
        key = (source.spec.schedule, source.spec.timezone, after)
        cached = self._next.get(source.metadata.uid)
        if cached is None or cached[0] != key:
            cached = self._next[source.metadata.uid] = (key, self._schedule(source).next_after(after))
        return cached[1]

    def _done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._busy.get(uid) is task:
            del self._busy[uid]

    async def _send_ticks(
        self, session: aiohttp.ClientSession, source: PingSource, ticks: list[datetime]
    ) -> None:
        try:
            for tick in ticks:
                if not self._holds_partition() or self._stopping.is_set():
                    return  # the next owner (or this one, restarted) sends what is left
                outcome = await self._send(session, source, tick)
                PINGS.labels(source.metadata.namespace, source.metadata.name, outcome).inc()
                self._handled[source.metadata.uid] = tick
                await self._record(source, tick, outcome)
        except Exception:
            # A task of the scheduler's group: one source's bug must not stop the others.
            log.exception("pingsource %s: sending ticks failed", source.key)

    async def _record(self, source: PingSource, tick: datetime, outcome: str) -> None:
        record = {"tick": format_time(tick), "source": source.key, "outcome": outcome}
        try:
            await self._writer.write([(source.metadata.uid, record)])
        except Unavailable as exc:
            # This process remembers the tick; a successor would send it again, with the same id.
            log.warning("pingsource %s: cannot record tick %s: %s", source.key, record["tick"], exc)

    async def _send(self, session: aiohttp.ClientSession, source: PingSource, tick: datetime) -> str:
        event = ping_event(source, tick)
        headers, body = to_http_binary(event)
        url = source.status.sink_uri or ""
        denied = self._policy.denied_url(url)  # an address in the URL (aiohttp resolves only names)
        if denied is not None:
            log.warning("ping %s id=%s to %s refused: %s", source.key, event.id, url, denied)
            return "failed"
        proxy = self._proxies.for_url(url) if self._proxies is not None else None
        tunnel_headers = None
        if proxy is not None:
            # aiohttp sends proxy_headers only with CONNECT (https://); a plain request through
            # a proxy carries the proxy's credentials itself, and the proxy removes them.
            if url.lower().startswith("https:"):
                tunnel_headers = proxy.headers
            else:
                headers = [*headers, *proxy.headers.items()]
        delay = 0.5
        problem = ""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with (
                    asyncio.timeout(_TIMEOUT),
                    session.post(
                        url,
                        data=body,
                        headers=headers,
                        allow_redirects=False,
                        proxy=proxy.address if proxy is not None else None,
                        proxy_headers=tunnel_headers,
                    ) as response,
                ):
                    await response.read()
                    if 200 <= response.status < 300:
                        log.info(
                            "ping %s id=%s time=%s -> %s", source.key, event.id, event.attributes["time"], url
                        )
                        return "sent"
                    problem = f"HTTP {response.status}"
                    if 400 <= response.status < 500 and response.status not in _RETRYABLE_4XX:
                        break
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < _ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.warning("ping %s id=%s to %s failed: %s", source.key, event.id, url, problem)
        return "failed"
