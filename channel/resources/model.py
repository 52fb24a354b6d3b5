"""Kanal's resources in Knative's shapes: Broker and Trigger (eventing.knative.dev/v1).

Pydantic is used here, at the boundary: manifests are parsed into these models, and the
resource log stores their JSON. Field names are Knative's (camelCase aliases), so the manifests
from Knative's documentation apply unchanged. Status is computed by the controller
(`channel.control.reconcile`) and never accepted from a manifest. `status.annotations` (Knative's
duck-typed Status has it for a reconciler's own state) holds what the controller records rather
than computes: a Trigger's or Subscription's start point, `kanal.dev/start-offsets`
(`channel.resources.start`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from channel.resources.delivery import DeliverySpec, parse_iso8601_duration
from channel.resources.destination import Destination

__all__ = [
    "EVENTING_V1",
    "MESSAGING_V1",
    "SOURCES_V1",
    "Addressable",
    "Broker",
    "BrokerSpec",
    "Channel",
    "ChannelSpec",
    "Condition",
    "KafkaChannel",
    "ObjectMeta",
    "PhysicalSubscription",
    "PingSource",
    "PingSourceSpec",
    "Resource",
    "Status",
    "Subscription",
    "SubscriptionSpec",
    "TopicSpec",
    "Trigger",
    "TriggerFilter",
    "TriggerSpec",
]

EVENTING_V1: Final = "eventing.knative.dev/v1"
MESSAGING_V1: Final = "messaging.knative.dev/v1"
MESSAGING_V1BETA1: Final = "messaging.knative.dev/v1beta1"
SOURCES_V1: Final = "sources.knative.dev/v1"

# Kubernetes names: namespaces are DNS-1123 labels, object names DNS-1123 subdomains.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectMeta(BaseModel):
    """The parts of Kubernetes ObjectMeta that Kanal keeps; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    creation_timestamp: str = Field(default="", alias="creationTimestamp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > 253 or not _SUBDOMAIN.match(value):
            raise ValueError(
                f"{value!r} is not a valid name (lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _LABEL.match(value):
            raise ValueError(
                f"{value!r} is not a valid namespace (lower-case letters, digits and '-', "
                "at most 63 characters)"
            )
        return value


class Condition(_Model):
    """A Knative status condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: str = Field(default="", alias="lastTransitionTime")


class Addressable(_Model):
    url: str


class PhysicalSubscription(_Model):
    """A Subscription's resolved destinations."""

    subscriber_uri: str | None = Field(default=None, alias="subscriberUri")
    reply_uri: str | None = Field(default=None, alias="replyUri")
    dead_letter_sink_uri: str | None = Field(default=None, alias="deadLetterSinkUri")


class SubscriberStatus(_Model):
    """One Subscription as its Channel reports it."""

    uid: str
    observed_generation: int = Field(default=0, alias="observedGeneration")
    ready: Literal["True", "False", "Unknown"] = "Unknown"
    message: str = ""


class Status(_Model):
    """Status common to Kanal's kinds; kind-specific fields are optional."""

    observed_generation: int = Field(default=0, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    address: Addressable | None = None
    subscriber_uri: str | None = Field(default=None, alias="subscriberUri")
    dead_letter_sink_uri: str | None = Field(default=None, alias="deadLetterSinkUri")
    physical_subscription: PhysicalSubscription | None = Field(default=None, alias="physicalSubscription")
    subscribers: list[SubscriberStatus] | None = None
    sink_uri: str | None = Field(default=None, alias="sinkUri")
    # Recorded by the controller and carried over by every reconcile (see the module docstring).
    annotations: dict[str, str] | None = None

    def condition(self, type_: str = "Ready") -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        cond = self.condition("Ready")
        return cond is not None and cond.status == "True"


class Resource(_Model):
    """Common envelope: apiVersion, kind, metadata, spec, status."""

    API_VERSION: ClassVar[str] = EVENTING_V1
    KIND: ClassVar[str] = ""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    status: Status = Field(default_factory=Status)

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != cls.API_VERSION:
            raise ValueError(f"{cls.KIND} is served as {cls.API_VERSION}, not {value}")
        return value

    @property
    def key(self) -> str:
        """The resource's identity: kind/namespace/name."""
        return f"{self.kind}/{self.metadata.namespace}/{self.metadata.name}"

    def document(self) -> dict[str, Any]:
        """The resource as a Knative-style JSON document."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class BrokerSpec(_Model):
    config: dict[str, Any] | None = None
    delivery: DeliverySpec | None = None


class Broker(Resource):
    """A Broker: an ingress address and a Kafka topic that Triggers select from."""

    KIND: ClassVar[str] = "Broker"
    kind: Literal["Broker"]
    spec: BrokerSpec = Field(default_factory=BrokerSpec)


class TriggerFilter(_Model):
    """The legacy filter: exact match on attributes (an empty value means present, any value)."""

    attributes: dict[str, str] = Field(default_factory=dict)


class TriggerSpec(_Model):
    broker: str = Field(min_length=1)
    filter: TriggerFilter | None = None
    # The Subscriptions API dialects, kept as written and compiled by channel.filters.
    filters: list[dict[str, Any]] | None = None
    subscriber: Destination
    delivery: DeliverySpec | None = None


class Trigger(Resource):
    """A Trigger: a filter and a subscriber on one Broker."""

    KIND: ClassVar[str] = "Trigger"
    kind: Literal["Trigger"]
    spec: TriggerSpec


class SubscriberSpec(_Model):
    """A Channel's view of one of its Subscriptions (filled in by the controller)."""

    uid: str
    generation: int = 0
    subscriber_uri: str | None = Field(default=None, alias="subscriberUri")
    reply_uri: str | None = Field(default=None, alias="replyUri")
    delivery: DeliverySpec | None = None


def _retention(value: str | None) -> str | None:
    if value is not None and parse_iso8601_duration(value) <= 0:
        raise ValueError("retentionDuration must be greater than zero")
    return value


class TopicSpec(_Model):
    """KafkaChannel's topic fields: in its spec, or in a Channel's `channelTemplate.spec`. Unset
    ones take Kanal's settings (KANAL_KAFKA_TOPIC_PARTITIONS, ..._REPLICATION_FACTOR, and the
    Kafka cluster's own retention)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    num_partitions: int | None = Field(default=None, alias="numPartitions", ge=1)
    replication_factor: int | None = Field(default=None, alias="replicationFactor", ge=1)
    retention_duration: str | None = Field(default=None, alias="retentionDuration")

    @field_validator("retention_duration")
    @classmethod
    def _retention(cls, value: str | None) -> str | None:
        return _retention(value)

    def retention_ms(self) -> int | None:
        if self.retention_duration is None:
            return None
        return round(parse_iso8601_duration(self.retention_duration) * 1000)


class ChannelSpec(_Model):
    channel_template: dict[str, Any] | None = Field(default=None, alias="channelTemplate")
    # KafkaChannel's own fields (see TopicSpec): its topic's partitions, replication and
    # retention, fixed once the Channel exists.
    num_partitions: int | None = Field(default=None, alias="numPartitions", ge=1)
    replication_factor: int | None = Field(default=None, alias="replicationFactor", ge=1)
    retention_duration: str | None = Field(default=None, alias="retentionDuration")
    delivery: DeliverySpec | None = None
    # Computed from the Channel's Subscriptions; never taken from a manifest.
    subscribers: list[SubscriberSpec] | None = None

    @field_validator("retention_duration")
    @classmethod
    def _retention(cls, value: str | None) -> str | None:
        return _retention(value)

    @field_validator("channel_template")
    @classmethod
    def _template(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and isinstance(value.get("spec"), dict):
            TopicSpec.model_validate(value["spec"])  # a KafkaChannel template's topic fields
        return value

    def topic(self) -> TopicSpec:
        """The topic the Channel declares: its own fields, else its template's."""
        own = TopicSpec(
            numPartitions=self.num_partitions,
            replicationFactor=self.replication_factor,
            retentionDuration=self.retention_duration,
        )
        template = (self.channel_template or {}).get("spec")
        if not isinstance(template, dict):
            return own
        inherited = TopicSpec.model_validate(template)
        return TopicSpec(
            numPartitions=own.num_partitions or inherited.num_partitions,
            replicationFactor=own.replication_factor or inherited.replication_factor,
            retentionDuration=own.retention_duration or inherited.retention_duration,
        )


class Channel(Resource):
    """A Channel: an address and a topic whose every event goes to every Subscription."""

    API_VERSION: ClassVar[str] = MESSAGING_V1
    KIND: ClassVar[str] = "Channel"
    kind: Literal["Channel"]
    spec: ChannelSpec = Field(default_factory=ChannelSpec)


class KafkaChannel(Channel):
    """Knative's KafkaChannel (messaging.knative.dev/v1beta1), served like a Channel."""

    API_VERSION: ClassVar[str] = MESSAGING_V1BETA1
    KIND: ClassVar[str] = "KafkaChannel"
    kind: Literal["KafkaChannel"]  # type: ignore[assignment]


class ChannelReference(_Model):
    api_version: str = Field(default=MESSAGING_V1, alias="apiVersion")
    kind: str = "Channel"
    name: str = Field(min_length=1)
    namespace: str | None = None


class SubscriptionSpec(_Model):
    channel: ChannelReference
    subscriber: Destination
    reply: Destination | None = None
    delivery: DeliverySpec | None = None


class Subscription(Resource):
    """A Subscription: a subscriber (and optional reply) on one Channel."""

    API_VERSION: ClassVar[str] = MESSAGING_V1
    KIND: ClassVar[str] = "Subscription"
    kind: Literal["Subscription"]
    spec: SubscriptionSpec


class CloudEventOverrides(_Model):
    extensions: dict[str, str] = Field(default_factory=dict)

    @field_validator("extensions")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.fullmatch(r"[a-z0-9]+", name)]
        if bad:
            raise ValueError(f"extension names are lower-case letters and digits: {', '.join(bad)}")
        return value


class PingSourceSpec(_Model):
    schedule: str = Field(min_length=1)
    timezone: str | None = None
    content_type: str | None = Field(default=None, alias="contentType")
    data: str | None = None
    data_base64: str | None = Field(default=None, alias="dataBase64")
    sink: Destination
    ce_overrides: CloudEventOverrides | None = Field(default=None, alias="ceOverrides")

    # One validator per field, so that every problem is reported, each at its own field.
    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        from channel.sources.schedule import Schedule, ScheduleError

        try:
            Schedule(value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        from channel.sources.schedule import Schedule, ScheduleError

        try:
            Schedule("* * * * *", value)
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("data_base64")
    @classmethod
    def _data_base64(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("data") is not None:
            raise ValueError("give data or dataBase64, not both")
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not valid base64") from None
        return value

    def payload(self) -> bytes | None:
        """The bytes each ping carries."""
        if self.data_base64 is not None:
            return base64.b64decode(self.data_base64)
        return None if self.data is None else self.data.encode()


class PingSource(Resource):
    """A PingSource: events of type dev.knative.sources.ping to a sink, on a cron schedule."""

    API_VERSION: ClassVar[str] = SOURCES_V1
    KIND: ClassVar[str] = "PingSource"
    kind: Literal["PingSource"]
    spec: PingSourceSpec
