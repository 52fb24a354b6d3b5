"""What the CLI reads from Kafka to show how Triggers and Subscriptions are doing: the lag of
their consumer groups, and the delivery statistics the dispatchers publish (`dispatcher.stats`).

Nothing here joins a consumer group or commits: lag is the group's committed offsets against the
topic's end offsets, asked of the brokers; statistics are the stats topic read from its beginning
to its end as it was when reading began (`channel.topics.TopicRange`). Both are bounded by
`READ_TIMEOUT`, and the statistics by `MAX_RECORDS`; past either the rest is said to be unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any, Final, cast

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from channel.errors import KanalError, NotFound
from channel.kafka import (
    STATS_TOPIC,
    LagReader,
    PartitionLag,
    broker_topic,
    channel_topic,
    subscription_group,
    trigger_group,
)
from channel.settings import Settings
from channel.topics import TopicRange
from dispatcher.stats import Statistics, aggregate, decode

__all__ = [
    "MAX_RECORDS",
    "READ_TIMEOUT",
    "consumer_of",
    "read_lags",
    "read_statistics",
    "resource_key",
    "total_lag",
]

READ_TIMEOUT: Final = 15.0
# Keys of the statistics topic held while reading it (one per resource and dispatcher replica of
# the last week; each value at most dispatcher.stats.MAX_RECORD_BYTES): past this it is not Kanal's.
MAX_RECORDS: Final = 200_000

Doc = Mapping[str, Any]


def resource_key(kind: str, namespace: str, name: str) -> str:
    """How the CLI names a Trigger or Subscription in the maps below (as the stats records do)."""
    return f"{kind.lower()}/{namespace}/{name}"


def consumer_of(doc: Doc, settings: Settings) -> tuple[str, str] | None:
    """The topic a Trigger or Subscription reads and its consumer group (the dispatcher's
    naming, `channel.kafka`); None for other kinds or a document without a uid."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    namespace, name, uid = meta.get("namespace", "default"), meta.get("name", ""), meta.get("uid")
    if not uid:
        return None
    if doc.get("kind") == "Trigger":
        topic = broker_topic(namespace, str(spec.get("broker", "")), settings.kafka_topic_prefix)
        return topic, trigger_group(namespace, name, uid)
    if doc.get("kind") == "Subscription":
        channel = str((spec.get("channel") or {}).get("name", ""))
        return channel_topic(namespace, channel, settings.kafka_channel_topic_prefix), subscription_group(
            namespace, name, uid
        )
    return None


def total_lag(lags: Sequence[PartitionLag]) -> int | None:
    """A group's lag over all partitions; None when no partition has a commit yet."""
    known = [p.lag for p in lags if p.lag is not None]
    return sum(known) if known else None


async def read_lags(settings: Settings, docs: Iterable[Doc]) -> dict[str, list[PartitionLag] | str]:
    """Per Trigger or Subscription (by `resource_key`), its lag per partition, or why it is
    not known."""
    wanted = {
        resource_key(str(doc.get("kind")), *_names(doc)): found
        for doc in docs
        if (found := consumer_of(doc, settings)) is not None
    }
    result: dict[str, list[PartitionLag] | str] = dict.fromkeys(wanted, "unknown: Kafka did not answer")
    if not wanted:
        return result
    try:
        async with asyncio.timeout(READ_TIMEOUT), LagReader(settings) as reader:
            for key, (topic, group) in wanted.items():
                try:
                    result[key] = await reader.lag(topic, group)
                except KafkaError as exc:
                    result[key] = f"unknown: {exc}"
    except (TimeoutError, KafkaError, OSError):
        pass  # what was read stands; the rest stays unknown
    return result


async def read_statistics(settings: Settings) -> dict[str, Statistics] | str:
    """Every resource's statistics (by `resource_key`), or why none could be read."""
    latest: dict[str, dict[str, Any] | None] = {}
    reader = TopicRange(settings, STATS_TOPIC)
    try:
        # An async generator (typed as an iterator): closed as soon as reading stops, early or not.
        generator = cast(AsyncGenerator[ConsumerRecord[Any, Any], None], reader.records())
        async with asyncio.timeout(READ_TIMEOUT), contextlib.aclosing(generator) as records:
            async for record in records:
                key = (record.key or b"").decode(errors="replace")
                if key not in latest and len(latest) >= MAX_RECORDS:
                    return f"unknown: {STATS_TOPIC} holds more than {MAX_RECORDS:,} keys"
                latest[key] = decode(record.value)
    except NotFound:
        return {}  # no dispatcher has published yet
    except TimeoutError:
        return f"unknown: {STATS_TOPIC} was not read within {READ_TIMEOUT:.0f}s"
    except (KanalError, KafkaError, OSError) as exc:
        return f"unknown: {exc}"
    by_resource: dict[str, dict[str, dict[str, Any] | None]] = {}
    for key, value in latest.items():
        resource, _, _replica = key.rpartition("/")
        by_resource.setdefault(resource, {})[key] = value
    return {resource: aggregate(records) for resource, records in by_resource.items()}


def _names(doc: Doc) -> tuple[str, str]:
    meta = doc.get("metadata") or {}
    return str(meta.get("namespace", "default")), str(meta.get("name", ""))
