"""The end of each partition of a topic's log: what the controller records as a new Trigger's start point.

`log_ends` answers, per topic that exists, per partition, the offset the next record written
there will get. Every event the ingress answered 202 for lies below it: the ingress writes with
acks=all, and Kafka acknowledges such a write only once its high watermark has passed it.

The end is taken from a fetch response's high watermark, not from ListOffsets (`end_offsets`):
the embedded broker answers ListOffsets with one past the first record of a partition's last
batch, which is too early when that batch holds several records (as the ingress's do); Apache
Kafka answers both alike. Only topics the broker lists are asked about by name, since a metadata
request for a missing topic can create it (`auto.create.topics.enable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from channel.kafka import client_options
from channel.settings import Settings

__all__ = ["log_ends"]

# The reader's fetch wait: the embedded broker answers a fetch only when it expires (never for
# 0), Apache Kafka at once when the reader is behind the high watermark and then after it.
_FETCH_WAIT_MS = 10


async def log_ends(
    settings: Settings, admin: AIOKafkaAdminClient, topics: Iterable[str], timeout: float
) -> dict[str, dict[int, int]]:
    """Per topic of `topics` that exists, per partition, the offset of the next record written.

    Raises TimeoutError when Kafka does not answer within `timeout` seconds.
    """
    async with asyncio.timeout(timeout):
        wanted = sorted(set(topics) & set(await admin.list_topics()))
        if not wanted:
            return {}
        described = await admin.describe_topics(wanted)
        partitions = [
            TopicPartition(topic["topic"], part["partition"])
            for topic in described
            for part in topic["partitions"]
            if topic["topic"] in wanted
        ]
        reader = AIOKafkaConsumer(
            **client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )
        await reader.start()
        try:
            reader.assign(partitions)
            await reader.seek_to_end(*partitions)  # close to the end; the fetch says where it is
            ends: dict[str, dict[int, int]] = {topic: {} for topic in wanted}
            for tp in partitions:
                while (high := reader.highwater(tp)) is None:
                    await reader.getmany(*partitions, timeout_ms=_FETCH_WAIT_MS * 5)
                ends[tp.topic][tp.partition] = high
            return ends
        finally:
            await reader.stop()
