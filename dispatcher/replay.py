"""Replay: deliver a Trigger's events again from its Broker's retained Kafka log.

`kanal replay trigger NAME -n NS --from TIME|OFFSET [--to TIME]` reads the Broker's topic over
that range with a reader of its own (`channel.topics.TopicRange`: no consumer group, no commits),
applies the Trigger's filter and delivers with the same `Dispatcher` as live delivery: retries,
replies and dead letters as the Trigger's delivery spec says. The Trigger's consumer group and
the running dispatchers are not touched, so live delivery goes on meanwhile, without a gap or a
reset; the replayed range is delivered once more, in addition. The range is fixed when the
replay starts (`--to`, or the end of the log then), so the replay ends by itself. With
KANAL_TRACING_ENDPOINT set, the replay's deliveries are traced as the dispatcher's are (service
kanal-replay), in the traces of the events' stored traceparents.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channel.destinations import DestinationPolicy
from channel.errors import InvalidEvent, NotFound
from channel.events import from_kafka_record
from channel.kafka import create_producer
from channel.producer import KafkaEventSink
from channel.proxy import Proxies
from channel.settings import Settings
from channel.topics import RangeStart, TopicRange
from dispatcher.delivery import MAX_RESPONSE_BYTES, HttpPoster
from dispatcher.dispatch import Dispatcher, source_of
from dispatcher.http import HttpClient
from dispatcher.plan import Plan, plans_from_documents

__all__ = ["ReplaySummary", "replay_plan", "run_replay"]


@dataclass
class ReplaySummary:
    read: int = 0
    matched: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    total: int | None = None
    scanned: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        parts = [f"read {self.read}", f"matched {self.matched}"]
        parts += [
            f"{name} {self.outcomes.get(name, 0)}" for name in ("delivered", "dead_lettered", "dropped")
        ]
        return ", ".join(parts) + f" in {self.seconds:.1f}s"


def replay_plan(settings: Settings, trigger: Mapping[str, Any], broker: Mapping[str, Any]) -> Plan:
    """The Trigger's delivery plan, exactly as the dispatcher builds it."""
    meta, bmeta = trigger.get("metadata") or {}, broker.get("metadata") or {}
    documents = {
        f"Trigger/{meta.get('namespace')}/{meta.get('name')}": trigger,
        f"Broker/{bmeta.get('namespace')}/{bmeta.get('name')}": broker,
    }
    plans = plans_from_documents(
        documents,
        topic_prefix=settings.kafka_topic_prefix,
        default_timeout=settings.dispatcher_default_timeout,
        channel_topic_prefix=settings.kafka_channel_topic_prefix,
    )
    key = f"Trigger/{meta.get('namespace')}/{meta.get('name')}"
    if key not in plans:
        raise NotFound(
            f"Trigger {meta.get('namespace')}/{meta.get('name')} is not Ready: nothing to replay to"
        )
    return plans[key]


async def run_replay(
    settings: Settings,
    plan: Plan,
    start: RangeStart,
    until_ms: int | None,
    *,
    dry_run: bool = False,
    concurrency: int = 64,
    progress: Callable[[ReplaySummary], None] | None = None,
) -> ReplaySummary:
    proxies = Proxies.from_environment(os.environ)  # a bad proxy setting fails before any work
    summary = ReplaySummary()
    began = time.monotonic()
    reader = TopicRange(settings, plan.topic, start, until_ms)
    producer = create_producer(settings)
    await producer.start()
    limit = asyncio.Semaphore(concurrency)
    client = HttpClient(
        per_host=concurrency,
        max_response=MAX_RESPONSE_BYTES,
        proxies=proxies,
        policy=DestinationPolicy.from_settings(settings),
    )
    last_report = 0.0
    tracing = None
    if settings.tracing_endpoint and not dry_run:
        from channel.tracing import Tracing
        from dispatcher.tracing import DispatchTracer

        tracing = Tracing(settings, "replay")
    try:
        async with asyncio.TaskGroup() as tasks:
            dispatcher = Dispatcher(
                HttpPoster(client),
                KafkaEventSink(producer, settings.kafka_produce_timeout),
                max_hops=settings.dispatcher_max_hops,
                tracer=DispatchTracer(tracing) if tracing is not None else None,
            )

            async def deliver(record: Any) -> None:
                try:
                    event = from_kafka_record(record.key, record.value, record.headers)
                    result = await dispatcher.deliver(plan, event, source_of(record))
                finally:
                    limit.release()
                summary.outcomes[result.value] = summary.outcomes.get(result.value, 0) + 1

            async for record in reader.records():
                summary.read += 1
                summary.total, summary.scanned = reader.total, reader.scanned
                try:
                    event = from_kafka_record(record.key, record.value, record.headers)
                except InvalidEvent:
                    continue
                if not plan.filter.matches(event.attributes):
                    continue
                summary.matched += 1
                if not dry_run:
                    await limit.acquire()
                    tasks.create_task(deliver(record))
                now = time.monotonic()
                if progress is not None and now - last_report > 0.2:
                    last_report = now
                    progress(summary)
    finally:
        await client.close()
        await producer.stop()
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)  # the replay's spans, sent before it returns
    summary.total, summary.scanned = reader.total, reader.scanned
    summary.seconds = time.monotonic() - began
    if progress is not None:
        progress(summary)
    return summary
