"""Committed offsets of many consumer groups, read and written through one Kafka client.

The dispatcher reads each topic once and fans its records out to every Trigger of that topic,
but each Trigger keeps its own progress in its own consumer group (`channel.kafka.trigger_group`),
so a slow Trigger never holds back a fast one and tools that reset a group's offsets see one
group per Trigger. Those groups have no members: their offsets are committed the way a consumer
with manually assigned partitions commits them (generation -1, no member id), which Kafka accepts
for groups without active members. One client serves them all, whatever their number: no client,
connection or thread per Trigger.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient, ConnectionGroup, CoordinationType
from aiokafka.errors import (
    CoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorError,
    for_code,
)
from aiokafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest

__all__ = ["GroupOffsets"]

log = logging.getLogger(__name__)

_NO_OFFSET = -1
_RETRIES = 3


class GroupOffsets:
    """Fetch and commit offsets of member-less consumer groups."""

    def __init__(self, client: AIOKafkaClient) -> None:
        self._client = client
        self._coordinators: dict[str, int] = {}

    async def _coordinator(self, group: str) -> int:
        node = self._coordinators.get(group)
        if node is None:
            node = await self._client.coordinator_lookup(CoordinationType.GROUP, group)
            self._coordinators[group] = node
        return node

    async def _send(self, group: str, request: object) -> object:
        for attempt in range(_RETRIES):
            node = await self._coordinator(group)
            try:
                return await self._client.send(node, request, group=ConnectionGroup.COORDINATION)
            except (NotCoordinatorError, CoordinatorNotAvailableError, KafkaError):
                self._coordinators.pop(group, None)
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    async def fetch(self, group: str, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The committed offsets of `group` for `partitions`; partitions without one are left out."""
        by_topic: dict[str, list[int]] = defaultdict(list)
        for tp in partitions:
            by_topic[tp.topic].append(tp.partition)
        if not by_topic:
            return {}
        response = await self._send(group, OffsetFetchRequest(group, list(by_topic.items())))
        found: dict[TopicPartition, int] = {}
        for topic, parts in response.topics:  # type: ignore[attr-defined]
            for partition, offset, _metadata, code in parts:
                error = for_code(code)
                if code:
                    self._coordinators.pop(group, None)
                    raise error(f"fetching offsets of {group}")
                if offset != _NO_OFFSET:
                    found[TopicPartition(topic, partition)] = offset
        return found

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit `offsets` (the next offset to read, per partition) for `group`."""
        by_topic: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
        for tp, offset in offsets.items():
            by_topic[tp.topic].append((tp.partition, offset, ""))
        if not by_topic:
            return
        request = OffsetCommitRequest(
            group,
            OffsetCommitRequest.DEFAULT_GENERATION_ID,
            "",
            OffsetCommitRequest.DEFAULT_RETENTION_TIME,
            list(by_topic.items()),
        )
        response = await self._send(group, request)
        for _topic, parts in response.topics:  # type: ignore[attr-defined]
            for _partition, code in parts:
                if code:
                    self._coordinators.pop(group, None)
                    raise for_code(code)(f"committing offsets of {group}")
