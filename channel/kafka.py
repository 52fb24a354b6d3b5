"""Kafka plumbing shared by every component: client settings, topic and group naming, topic admin.

Names are derived deterministically from resource identity, so every process computes the same
topic for a Broker and the same consumer group for a Trigger without asking anyone. Namespaces
are DNS labels (no dots), so ``<prefix>.<namespace>.<name>`` cannot collide across namespaces.
"""

from __future__ import annotations

import hashlib
import logging
import re
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
    for_code,
)

from channel.errors import AccessDenied
from channel.settings import Settings

__all__ = [
    "BROKER_TOPIC_PREFIX",
    "CHANNEL_TOPIC_PREFIX",
    "DEAD_LETTER_TOPIC_ANNOTATION",
    "HOP_HEADER",
    "MAX_TOPIC_LENGTH",
    "STATS_TOPIC",
    "LagReader",
    "PartitionLag",
    "access_denied",
    "broker_topic",
    "channel_topic",
    "check_connection",
    "client_options",
    "create_admin",
    "create_producer",
    "dispatcher_group",
    "ensure_topic",
    "subscription_group",
    "trigger_group",
    "valid_topic_name",
]

log = logging.getLogger(__name__)

MAX_TOPIC_LENGTH: Final = 249
BROKER_TOPIC_PREFIX: Final = "knative-broker"
CHANNEL_TOPIC_PREFIX: Final = "knative-channel"
# The compacted topic of the dispatchers' delivery statistics per Trigger and Subscription
# (dispatcher.stats writes it, `kanal describe` reads it).
STATS_TOPIC: Final = "kanal.stats"
# Kanal's own record header (not a `ce_` header, so subscribers never see it): how many times
# this event has been a reply, for the reply-loop guard.
HOP_HEADER: Final = "kanal-hops"


def _bounded(name: str) -> str:
    if len(name) <= MAX_TOPIC_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[: MAX_TOPIC_LENGTH - 17]}.{digest}"


def broker_topic(namespace: str, name: str, prefix: str = BROKER_TOPIC_PREFIX) -> str:
    """The Kafka topic that holds a Broker's events."""
    return _bounded(f"{prefix}.{namespace}.{name}")


def channel_topic(namespace: str, name: str, prefix: str = CHANNEL_TOPIC_PREFIX) -> str:
    """The Kafka topic that holds a Channel's events."""
    return _bounded(f"{prefix}.{namespace}.{name}")


def trigger_group(namespace: str, name: str, uid: str) -> str:
    """A Trigger's consumer group. The uid makes a re-created Trigger start afresh."""
    return f"kanal.trigger.{namespace}.{name}.{uid[:8]}"


# A Trigger's or Subscription's annotation naming a Kafka topic for its dead letters (Knative's
# delivery spec has no field for one, so manifests with it stay valid Knative YAML).
DEAD_LETTER_TOPIC_ANNOTATION = "kanal.dev/dead-letter-topic"
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def valid_topic_name(name: str) -> bool:
    return bool(_TOPIC_NAME.fullmatch(name)) and name not in (".", "..")


def dispatcher_group(topic: str) -> str:
    """The group in which dispatcher processes share a topic's partitions (one reader per partition)."""
    return _bounded(f"kanal.dispatcher.{topic}")


def subscription_group(namespace: str, name: str, uid: str) -> str:
    """A Subscription's consumer group."""
    return f"kanal.subscription.{namespace}.{name}.{uid[:8]}"


def client_options(settings: Settings) -> dict[str, object]:
    """Connection and security options common to every aiokafka client."""
    opts: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap(),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        opts["ssl_context"] = context
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password
    return opts


# Kafka's refusals, which no retry mends, and the words that say so, before what aiokafka names
# (a topic, a set of topics, a group, or the broker's message).
_REFUSALS: Final[tuple[tuple[type[KafkaError], str], ...]] = (
    (TopicAuthorizationFailedError, "not authorized to access topic"),
    (GroupAuthorizationFailedError, "not authorized to access consumer group"),
    # The one cluster operation Kanal asks for: a producer id, for its idempotent producers.
    (
        ClusterAuthorizationFailedError,
        "not authorized for a cluster operation (an idempotent producer needs WRITE on a topic,"
        " or IDEMPOTENT_WRITE on the cluster)",
    ),
    (SaslAuthenticationFailed, "authentication failed:"),
    (AuthenticationFailedError, "authentication failed:"),
)


def access_denied(exc: BaseException) -> AccessDenied | None:
    """`exc` as AccessDenied when it, or an exception inside it (an exception group's, a cause),
    says Kafka refused Kanal's credentials or an operation, or Kanal refused the broker's
    certificate; None for anything else."""
    if isinstance(exc, AccessDenied):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = (access_denied(inner) for inner in exc.exceptions)
        return next((denied for denied in found if denied is not None), None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AccessDenied(
            f"TLS certificate verify failed: {exc.verify_message} (KANAL_KAFKA_SSL_CAFILE must hold"
            " the CA that signed the broker's certificate)"
        )
    for kind, words in _REFUSALS:
        if isinstance(exc, kind):
            subject = ", ".join(
                ", ".join(sorted(map(str, arg))) if isinstance(arg, set | frozenset | list) else str(arg)
                for arg in exc.args
            )
            return AccessDenied(" ".join(part for part in (words, subject) if part).rstrip(":"))
    return access_denied(exc.__cause__) if exc.__cause__ is not None else None


async def check_connection(settings: Settings) -> None:
    """Connect to the bootstrap servers as every client will (TLS, SASL) before any client
    starts, so that a refusal is reported with its cause: a client's own bootstrap says only
    "Unable to bootstrap". Raises AccessDenied when no server accepts Kanal and one refused its
    credentials or TLS; servers that cannot be reached are left to the clients, as before."""
    opts = client_options(settings)
    refused: AccessDenied | None = None
    for host, port, _ in collect_hosts(settings.bootstrap(), randomize=False):
        try:
            connection = await create_conn(
                host,
                port,
                ssl_context=opts.get("ssl_context"),
                security_protocol=settings.kafka_security_protocol,
                sasl_mechanism=settings.kafka_sasl_mechanism,
                sasl_plain_username=settings.kafka_sasl_username,
                sasl_plain_password=settings.kafka_sasl_password,
            )
        except (OSError, KafkaError, TimeoutError) as exc:
            if (denied := access_denied(exc)) is not None:
                who = f" as user {settings.kafka_sasl_username}" if settings.kafka_sasl_mechanism else ""
                refused = AccessDenied(f"cannot connect to Kafka at {host}:{port}{who}: {denied}")
            continue
        connection.close()
        return
    if refused is not None:
        raise refused


def max_record_bytes(settings: Settings) -> int:
    """The largest record batch Kanal writes: an event at the ingress's body limit with its
    attributes as headers, or a dead letter of it with the error extensions. The producers'
    max_request_size, and the max.message.bytes of the event topics Kanal creates (Kafka's own
    default, 1 MiB, would refuse an event at the default body limit)."""
    return max(settings.ingress_max_body_bytes * 2, 1024 * 1024)


def create_producer(settings: Settings, **overrides: object) -> AIOKafkaProducer:
    """A producer that only reports success once every in-sync replica has the record."""
    opts = client_options(settings)
    opts.update(
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        linger_ms=0,  # batches still form while a request is in flight; waiting only adds latency
        request_timeout_ms=int(settings.kafka_produce_timeout * 1000),
        max_request_size=max_record_bytes(settings),
        # Up to this much per partition in one produce request (aiokafka's default is 16 KiB): the
        # ingress's batches hold many HTTP requests' events, and Kafka's default limit for one
        # batch (message.max.bytes) is 1 MiB. A single larger record still goes alone.
        max_batch_size=256 * 1024,
    )
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def create_admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(settings))


async def ensure_topic(
    admin: AIOKafkaAdminClient,
    topic: str,
    *,
    partitions: int,
    replication_factor: int,
    config: dict[str, str] | None = None,
) -> bool:
    """Create `topic` unless it exists. Returns True if this call created it."""
    try:
        response = await admin.create_topics(
            [NewTopic(topic, partitions, replication_factor, topic_configs=config or {})]
        )
    except TopicAlreadyExistsError:
        return False
    for error in getattr(response, "topic_errors", ()):
        code = error[1]
        if code == TopicAlreadyExistsError.errno:
            return False
        if code == TopicAuthorizationFailedError.errno:
            raise TopicAuthorizationFailedError(topic)
        if code:
            raise KafkaError(f"cannot create topic {topic}: error {code} {error[2] or ''}".strip())
    log.info("created topic %s (%d partitions)", topic, partitions)
    return True


async def delete_topic(admin: AIOKafkaAdminClient, topic: str) -> None:
    """Delete `topic`; a topic that is already gone is fine."""
    try:
        response = await admin.delete_topics([topic])
    except KafkaError as exc:
        log.warning("cannot delete topic %s: %s", topic, exc)
        return
    # Kafka answers a refusal (a missing DELETE ACL, say) in the response, not as an error.
    for _name, code in getattr(response, "topic_error_codes", ()):
        if code and code != UnknownTopicOrPartitionError.errno:
            log.warning("cannot delete topic %s: %s", topic, for_code(code)(topic))


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of a consumer group's topic: the group's committed offset (None before its
    first commit) and the end of the log."""

    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int | None:
        return None if self.committed is None else max(0, self.end - self.committed)


class LagReader:
    """Reads consumer groups' lag (committed offsets against the topic's end offsets) without
    joining any group or committing anything; one admin client and one consumer for every call.

    The end of a partition is the high watermark of a fetch at its listed end, as the dispatcher
    takes it: some Kafka-protocol brokers (the embedded one) answer ListOffsets with the start of
    the last batch rather than the end of the log. Each topic's ends are read once per reader."""

    def __init__(self, settings: Settings) -> None:
        self._admin = create_admin(settings)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
        )
        self._ends: dict[str, dict[TopicPartition, int]] = {}

    async def __aenter__(self) -> LagReader:
        try:
            await self._admin.start()
            await self._consumer.start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def lag(self, topic: str, group: str) -> list[PartitionLag]:
        """Per partition of `topic`, what `group` has committed and where the log ends."""
        [described] = await self._admin.describe_topics([topic])
        if described.get("error_code"):
            raise for_code(described["error_code"])(f"describing topic {topic}")
        partitions = [TopicPartition(topic, int(p["partition"])) for p in described.get("partitions") or ()]
        if not partitions:
            return []
        ends = self._ends.get(topic) or await self._fetch_ends(topic, partitions)
        committed = await self._admin.list_consumer_group_offsets(group, partitions=partitions)
        return [
            PartitionLag(
                tp.partition,
                committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None,
                ends[tp],
            )
            for tp in sorted(partitions)
        ]

    async def _fetch_ends(self, topic: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        listed = await self._consumer.end_offsets(partitions)
        self._consumer.assign(partitions)
        for tp in partitions:
            self._consumer.seek(tp, listed[tp])
        high: dict[TopicPartition, int | None] = dict.fromkeys(partitions)
        for _ in range(20):  # a fetch answers within its wait (100 ms): two seconds at the most
            await self._consumer.getmany(*partitions, timeout_ms=100)
            high = {tp: self._consumer.highwater(tp) for tp in partitions}
            if all(h is not None for h in high.values()):
                break
        ends = {tp: max(listed[tp], high[tp] or 0) for tp in partitions}
        self._ends[topic] = ends
        return ends
