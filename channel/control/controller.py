"""The controller: validates and stores resources, creates topics and computes status.

It is the resource log's only writer. An apply is checked whole (schema, filters, immutable
fields) before anything is written, topics are created for new Brokers, statuses are computed
for the whole resulting set, and everything changed goes to the log in one atomic batch. The
controller then waits until it has read its own write back, so the next `kanal get` sees it.
A periodic pass repairs what an earlier pass could not finish (a topic Kafka refused, say).

A Trigger or Subscription created by an apply gets its start point before it is stored: the end
of each partition of its topic then (`channel.control.ends`), recorded in its status
(`channel.resources.start`), so it gets exactly the events accepted after it was created. When a
Broker or Channel is deleted with its topic, the start points of its Triggers or Subscriptions
become empty: a topic made later under that name is new, all of it theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from channel.control.ends import log_ends
from channel.control.log import Documents, ResourceLog, ResourceWriter
from channel.control.reconcile import Addressing, channel_subscribers, reconcile
from channel.destinations import DestinationPolicy
from channel.errors import Conflict, NotFound, Problem, Unavailable, ValidationError
from channel.kafka import (
    DEAD_LETTER_TOPIC_ANNOTATION,
    broker_topic,
    channel_topic,
    create_admin,
    delete_topic,
    ensure_topic,
    max_record_bytes,
)
from channel.resources.manifests import KINDS, parse_resource
from channel.resources.model import Broker, Channel, Resource, Subscription, TopicSpec, Trigger
from channel.resources.start import StartPoint
from channel.settings import Settings

__all__ = ["ApplyResult", "Controller", "now_rfc3339", "parse_documents_map"]

log = logging.getLogger(__name__)

Action = Literal["created", "configured", "unchanged", "deleted"]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    kind: str
    namespace: str
    name: str
    action: Action

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "action": self.action,
        }


def parse_documents_map(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Resource]:
    """Stored documents as resources; a document that no longer parses is logged and left out."""
    out: dict[str, Resource] = {}
    for key, doc in documents.items():
        model = KINDS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))
        if model is None:
            continue
        try:
            out[key] = model.model_validate(doc)
        except ValueError as exc:
            log.error("stored resource %s does not parse: %s", key, exc)
    return out


class Controller:
    """Owns the resource log's writer; serialises every change through one lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.addressing = Addressing(
            ingress_url=settings.public_ingress_url(),
            service_url_template=settings.service_url_template,
            topic_prefix=settings.kafka_topic_prefix,
            channel_topic_prefix=settings.kafka_channel_topic_prefix,
        )
        # Destinations a Trigger, Subscription or PingSource is not Ready with (DestinationDenied).
        self.policy = DestinationPolicy.from_settings(settings)
        self.log = ResourceLog(settings)
        self._writer = ResourceWriter(settings)
        self._admin: AIOKafkaAdminClient = create_admin(settings)
        self._lock = asyncio.Lock()
        self._topics: set[str] = set()

    async def start(self) -> None:
        try:
            await self.log.start()
            await self._writer.start()
            await self._admin.start()
        except BaseException:
            await self.close()  # nothing is left open when the start fails
            raise

    async def close(self) -> None:
        await self._writer.close()
        await self.log.close()
        with contextlib.suppress(KafkaError):
            await self._admin.close()

    @property
    def ready(self) -> bool:
        return self.log.loaded.is_set()

    @property
    def documents(self) -> Documents:
        """The stored document of every resource, by key `Kind/namespace/name`."""
        return self.log.documents

    def resources(self) -> dict[str, Resource]:
        return parse_documents_map(self.log.documents)

    async def run(self, resync_interval: float = 5.0) -> None:
        """Follow the log and resync periodically until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.log.run())
            await self.log.loaded.wait()
            while True:
                try:
                    async with self._lock:
                        await self._sync(self.resources(), {})
                except (KafkaError, ValidationError, TimeoutError) as exc:
                    log.warning("resync failed: %s", exc)
                await asyncio.sleep(resync_interval)

    async def apply(self, documents: Sequence[Mapping[str, Any]]) -> list[ApplyResult]:
        """Validate every document, then store them all or none. Raises ValidationError/Conflict."""
        parsed: list[Resource] = []
        problems: list[Problem] = []
        for i, doc in enumerate(documents):
            try:
                res = parse_resource(doc, f"document {i}")
            except ValidationError as exc:
                problems.extend(exc.problems)
                continue
            if isinstance(res, Resource):
                parsed.append(res)
        if problems:
            raise ValidationError(problems)
        async with self._lock:
            current = self.resources()
            results: list[ApplyResult] = []
            updates: dict[str, Resource] = {}
            created: set[str] = set()
            now = now_rfc3339()
            for res in parsed:
                old = current.get(res.key)
                if (
                    isinstance(old, Trigger)
                    and isinstance(res, Trigger)
                    and old.spec.broker != res.spec.broker
                ):
                    raise Conflict(f"{res.key}: spec.broker is immutable (was {old.spec.broker!r})")
                _check_immutable(old, res, current)
                merged, action = _merge(old, res, now)
                results.append(ApplyResult(res.kind, res.metadata.namespace, res.metadata.name, action))
                if action != "unchanged":
                    updates[res.key] = merged
                if action == "created":
                    created.add(res.key)
            updates.update(await self._start_points({k: updates[k] for k in created}))
            await self._sync({**current, **updates}, updates)
            return results

    async def delete(self, keys: Sequence[str]) -> list[ApplyResult]:
        async with self._lock:
            current = self.resources()
            missing = [k for k in keys if k not in current]
            if missing:
                raise NotFound(
                    ", ".join(
                        f'{k.split("/")[0]} "{k.split("/", 2)[2]}" not found in namespace "{k.split("/")[1]}"'
                        for k in missing
                    )
                )
            remaining = {k: v for k, v in current.items() if k not in keys}
            gone: set[str] = set()
            for key in keys:
                res = current[key]
                if isinstance(res, Broker | Channel):
                    await delete_topic(self._admin, self._topic(res))
                    self._topics.discard(self._topic(res))
                    gone.add(self._topic(res))
            # Their start points are offsets in a topic that is no more.
            restarted = {
                key: _with_start(res, StartPoint())
                for key, res in remaining.items()
                if isinstance(res, Trigger | Subscription) and self._source(res) in gone
            }
            remaining.update(restarted)
            await self._sync(remaining, restarted, deleted=list(keys))
            return [
                ApplyResult(
                    current[k].kind,
                    current[k].metadata.namespace,
                    current[k].metadata.name,
                    "deleted",
                )
                for k in keys
            ]

    def _topic(self, res: Resource) -> str:
        ns, name = res.metadata.namespace, res.metadata.name
        if isinstance(res, Channel):
            return channel_topic(ns, name, self.settings.kafka_channel_topic_prefix)
        return broker_topic(ns, name, self.settings.kafka_topic_prefix)

    def _source(self, res: Trigger | Subscription) -> str:
        """The topic a Trigger or Subscription reads: its Broker's or Channel's."""
        ns = res.metadata.namespace
        if isinstance(res, Trigger):
            return broker_topic(ns, res.spec.broker, self.settings.kafka_topic_prefix)
        return channel_topic(ns, res.spec.channel.name, self.settings.kafka_channel_topic_prefix)

    async def _start_points(self, created: Mapping[str, Resource]) -> dict[str, Resource]:
        """The Triggers and Subscriptions among `created` with their start points: the ends of
        their topics now (empty for a topic that does not exist yet: all of it will be theirs)."""
        readers = {k: r for k, r in created.items() if isinstance(r, Trigger | Subscription)}
        if not readers:
            return {}
        topics = {self._source(res) for res in readers.values()}
        try:
            ends = await log_ends(self.settings, self._admin, topics, self.settings.kafka_produce_timeout * 2)
        except KafkaError as exc:
            raise Unavailable(f"cannot read where the new resources start: {exc}") from exc
        return {
            key: _with_start(res, StartPoint.of(ends.get(self._source(res), {})))
            for key, res in readers.items()
        }

    async def _ensure_topics(self, resources: Mapping[str, Resource]) -> None:
        for res in resources.values():
            if isinstance(res, Broker | Channel):
                topic = self._topic(res)
            elif dead_letters := res.metadata.annotations.get(DEAD_LETTER_TOPIC_ANNOTATION):
                topic = dead_letters
            else:
                continue
            if topic in self._topics:
                continue
            declared = res.spec.topic() if isinstance(res, Channel) else TopicSpec()
            config = {
                # Event topics are never compacted: a data-less event is a null record.
                "cleanup.policy": "delete",
                # Every event the ingress accepts fits (a larger one would get a 413).
                "max.message.bytes": str(max_record_bytes(self.settings)),
            }
            if (retention := declared.retention_ms()) is not None:
                config["retention.ms"] = str(retention)
            try:
                await ensure_topic(
                    self._admin,
                    topic,
                    partitions=declared.num_partitions or self.settings.kafka_topic_partitions,
                    replication_factor=declared.replication_factor
                    or self.settings.kafka_topic_replication_factor,
                    config=config,
                )
                self._topics.add(topic)
            except KafkaError as exc:
                log.warning("cannot create topic %s for %s: %s", topic, res.key, exc)

    async def _sync(
        self,
        resources: dict[str, Resource],
        updates: Mapping[str, Resource],
        deleted: Sequence[str] = (),
    ) -> None:
        """Compute statuses for `resources` and write what changed (plus `updates`, `deleted`)."""
        await self._ensure_topics(resources)
        statuses = reconcile(
            resources, frozenset(self._topics), self.addressing, now_rfc3339(), policy=self.policy
        )
        subscribers = channel_subscribers(resources, statuses)
        records: list[tuple[str, dict[str, Any] | None]] = [(k, None) for k in deleted]
        for key, res in resources.items():
            status = statuses.get(key)
            if status is None:
                continue
            update: dict[str, Any] = {}
            if isinstance(res, Channel) and (res.spec.subscribers or []) != subscribers[key]:
                update["spec"] = res.spec.model_copy(update={"subscribers": subscribers[key]})
            if key in updates or update or status != res.status:
                res = res.model_copy(update={**update, "status": status})
                records.append((key, res.document()))
        if records:
            offset = await self._writer.write(records)
            await self.log.wait_for_offset(offset)


def _check_immutable(old: Resource | None, new: Resource, current: Mapping[str, Resource]) -> None:
    """Fields Knative makes immutable, and names two kinds would share."""
    if (
        isinstance(old, Subscription)
        and isinstance(new, Subscription)
        and old.spec.channel != new.spec.channel
    ):
        raise Conflict(f"{new.key}: spec.channel is immutable")
    if (
        isinstance(old, Channel)
        and isinstance(new, Channel)
        and old.spec.channel_template is not None
        and old.spec.channel_template != new.spec.channel_template
    ):
        raise Conflict(f"{new.key}: spec.channelTemplate is immutable once set")
    if isinstance(old, Channel) and isinstance(new, Channel) and old.spec.topic() != new.spec.topic():
        # Its topic was created with them: a change would be ignored without a word.
        raise Conflict(
            f"{new.key}: spec.numPartitions, spec.replicationFactor and spec.retentionDuration are"
            " immutable (they made its topic)"
        )
    if isinstance(new, Channel):
        other = "KafkaChannel" if new.kind == "Channel" else "Channel"
        if f"{other}/{new.metadata.namespace}/{new.metadata.name}" in current:
            raise Conflict(f"{new.key}: a {other} of that name exists; they would share an address and topic")


def _merge(old: Resource | None, new: Resource, now: str) -> tuple[Resource, Action]:
    """Carry identity (uid, creation time, generation) from the stored resource."""
    if old is None:
        meta = new.metadata.model_copy(
            update={"uid": str(uuid.uuid4()), "generation": 1, "creation_timestamp": now}
        )
        return new.model_copy(update={"metadata": meta}), "created"
    same_spec = _spec(old) == _spec(new)
    same_meta = (old.metadata.labels, old.metadata.annotations) == (
        new.metadata.labels,
        new.metadata.annotations,
    )
    meta = new.metadata.model_copy(
        update={
            "uid": old.metadata.uid,
            "creation_timestamp": old.metadata.creation_timestamp,
            "generation": old.metadata.generation + (0 if same_spec else 1),
        }
    )
    action: Action = "unchanged" if same_spec and same_meta else "configured"
    if isinstance(old, Channel) and isinstance(new, Channel):
        # spec.subscribers is the controller's, not the manifest's.
        new = new.model_copy(
            update={"spec": new.spec.model_copy(update={"subscribers": old.spec.subscribers})}
        )
    return new.model_copy(update={"metadata": meta, "status": old.status}), action


def _with_start(res: Resource, start: StartPoint) -> Resource:
    return res.model_copy(update={"status": start.in_status(res.status)})


def _spec(res: Resource) -> Any:
    spec = getattr(res, "spec").model_dump(mode="json", by_alias=True, exclude_none=True)  # noqa: B009
    if isinstance(res, Channel):
        spec.pop("subscribers", None)
    return spec
