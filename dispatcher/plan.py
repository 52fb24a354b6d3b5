"""What the dispatcher should run, derived from the resource log.

Pure: `plans_from_documents` turns stored resources into one `Plan` per Ready Trigger and per
Ready Subscription, with filters and delivery specs compiled once. The service compares plans:
a change of group or topic means a new consumer; a change of filter, subscriber, reply or
delivery is swapped into the running consumer.

A Trigger's reply goes back into its Broker's topic; a Subscription's reply is POSTed to its
`reply` destination, or discarded when it has none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from channel.errors import ValidationError
from channel.filters import Filter, compile_trigger_filter
from channel.kafka import (
    DEAD_LETTER_TOPIC_ANNOTATION,
    broker_topic,
    channel_topic,
    subscription_group,
    trigger_group,
)
from channel.resources.delivery import DeliverySpec, effective_delivery
from channel.resources.destination import Destination
from channel.resources.model import Broker, Channel, Subscription, Trigger
from channel.resources.protection import Protection
from channel.resources.start import StartPoint
from dispatcher.retry import RetryPolicy

__all__ = ["Plan", "TriggerPlan", "plans_from_documents"]

log = logging.getLogger(__name__)


class _MatchAll:
    """A Subscription's filter: every event of its Channel."""

    def matches(self, attributes: Mapping[str, str]) -> bool:
        return True


MATCH_ALL: Filter = _MatchAll()


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one Trigger's or Subscription's consumer needs, compiled."""

    kind: Literal["trigger", "subscription"]
    key: str
    namespace: str
    name: str
    group: str
    topic: str
    created_ms: int
    subscriber: str
    # Trigger: the Broker's address (replies are stored in `reply_topic`, its topic).
    # Subscription: the reply URL, or None to discard replies.
    reply_to: str | None
    reply_topic: str | None
    dead_letter: str | None
    retry: RetryPolicy
    generation: int = 0
    ordered: bool = False
    # A Kafka topic that gets a copy of every dead letter (annotation kanal.dev/dead-letter-topic).
    dead_letter_topic: str | None = None
    filter: Filter = field(default=MATCH_ALL, compare=False)
    # The Broker (of a Trigger) or Channel (of a Subscription) it reads from.
    parent: str = ""
    # delivery.format: json (DLV-04): every POST (subscriber, reply, dead letter) in structured
    # mode; else binary mode.
    structured: bool = False
    # (URL, PEM) of the destinations with CACerts: https:// certificates that may chain to them.
    ca_certs: tuple[tuple[str, str], ...] = ()
    # Where it begins on partitions it has committed nothing for (None: at `created_ms`, for one
    # created before the controller recorded start points).
    start: StartPoint | None = None
    # Subscriber protection its annotations declare (kanal.dev/max-in-flight and the rest).
    protection: Protection = field(default_factory=Protection)
    # Its metrics' first label values, in dispatcher.metrics.PLAN_LABELS's order.
    series: tuple[str, str, str, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", (self.namespace, self.kind, self.parent, self.name))

    def ca_certs_for(self, url: str) -> str | None:
        """The CACerts of the destination at `url`, if it has any."""
        for where, pem in self.ca_certs:  # usually none: a loop, not a generator per attempt
            if where == url:
                return pem
        return None

    @property
    def identity(self) -> tuple[str, str]:
        """What a running consumer cannot change without being recreated."""
        return (self.group, self.topic)


TriggerPlan = Plan  # the name most of the dispatcher speaks of

ORDER_ANNOTATION = "kafka.eventing.knative.dev/delivery.order"


def _ms(timestamp: str) -> int:
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def _ready(doc: Mapping[str, Any]) -> bool:
    for cond in (doc.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


@dataclass(frozen=True, slots=True)
class _Parent:
    delivery: DeliverySpec | None
    dead_letter: str | None
    address: str


def _dead_letter(own: DeliverySpec | None, own_dls: str | None, parent: _Parent) -> str | None:
    # A Trigger/Subscription with any delivery field replaces its parent's delivery wholesale,
    # the dead-letter sink included (DLV-15, SUB-09).
    if own is not None and not own.is_empty():
        return own_dls
    return parent.dead_letter


def _ca_certs(*destinations: tuple[str | None, Destination | None]) -> tuple[tuple[str, str], ...]:
    """(resolved URL, CACerts) of the destinations that have both."""
    return tuple(
        (url, spec.ca_certs) for url, spec in destinations if url and spec is not None and spec.ca_certs
    )


def _protection(key: str, annotations: Mapping[str, str]) -> Protection:
    """What the annotations declare; apply refuses invalid values, so only a resource stored before
    they were checked can have one, and it gets the global settings rather than not running."""
    try:
        return Protection.from_annotations(annotations)
    except ValidationError as exc:
        log.warning("%s: %s; the global settings apply", key, exc)
        return Protection()


def plans_from_documents(
    documents: Mapping[str, Mapping[str, Any]],
    *,
    topic_prefix: str,
    default_timeout: float,
    channel_topic_prefix: str = "knative-channel",
) -> dict[str, Plan]:
    """One plan per Ready Trigger (with a Ready Broker) and Ready Subscription (with a Ready Channel)."""
    brokers: dict[tuple[str, str], _Parent] = {}
    channels: dict[tuple[str, str], _Parent] = {}
    for key, doc in documents.items():
        kind = key.split("/", 1)[0]
        if kind not in ("Broker", "Channel", "KafkaChannel") or not _ready(doc):
            continue
        model = Broker if kind == "Broker" else Channel
        try:
            res = model.model_validate(
                {**doc, "kind": "Broker" if kind == "Broker" else "Channel", "apiVersion": model.API_VERSION}
            )
        except ValueError:
            continue
        parent = _Parent(
            res.spec.delivery,
            res.status.dead_letter_sink_uri,
            res.status.address.url if res.status.address else "",
        )
        (brokers if kind == "Broker" else channels)[(res.metadata.namespace, res.metadata.name)] = parent

    plans: dict[str, Plan] = {}
    for key, doc in documents.items():
        kind = key.split("/", 1)[0]
        if kind not in ("Trigger", "Subscription") or not _ready(doc):
            continue
        try:
            plan = (
                _trigger_plan(key, doc, brokers, topic_prefix, default_timeout)
                if kind == "Trigger"
                else _subscription_plan(key, doc, channels, channel_topic_prefix, default_timeout)
            )
        except (ValueError, ValidationError) as exc:
            log.error("cannot run %s: %s", key, exc)
            continue
        if plan is not None:
            plans[key] = plan
    return plans


def _trigger_plan(
    key: str, doc: Mapping[str, Any], brokers: Mapping[tuple[str, str], _Parent], prefix: str, timeout: float
) -> Plan | None:
    trigger = Trigger.model_validate(doc)
    ns = trigger.metadata.namespace
    parent = brokers.get((ns, trigger.spec.broker))
    if parent is None or not trigger.status.subscriber_uri:
        return None
    spec_filter = trigger.spec.filter.model_dump() if trigger.spec.filter else None
    delivery = effective_delivery(trigger.spec.delivery, parent.delivery)
    topic = broker_topic(ns, trigger.spec.broker, prefix)
    dead_letter = _dead_letter(trigger.spec.delivery, trigger.status.dead_letter_sink_uri, parent)
    return Plan(
        kind="trigger",
        key=key,
        namespace=ns,
        name=trigger.metadata.name,
        group=trigger_group(ns, trigger.metadata.name, trigger.metadata.uid),
        topic=topic,
        created_ms=_ms(trigger.metadata.creation_timestamp),
        start=StartPoint.from_status(trigger.status),
        subscriber=trigger.status.subscriber_uri,
        reply_to=parent.address,
        reply_topic=topic,
        dead_letter=dead_letter,
        retry=RetryPolicy.from_spec(delivery, default_timeout=timeout),
        generation=trigger.metadata.generation,
        ordered=trigger.metadata.annotations.get(ORDER_ANNOTATION) == "ordered",
        dead_letter_topic=trigger.metadata.annotations.get(DEAD_LETTER_TOPIC_ANNOTATION) or None,
        protection=_protection(key, trigger.metadata.annotations),
        filter=compile_trigger_filter(spec_filter, trigger.spec.filters),
        parent=trigger.spec.broker,
        structured=delivery is not None and delivery.format == "json",
        ca_certs=_ca_certs(
            (trigger.status.subscriber_uri, trigger.spec.subscriber),
            (dead_letter, delivery.dead_letter_sink if delivery else None),
        ),
    )


def _subscription_plan(
    key: str, doc: Mapping[str, Any], channels: Mapping[tuple[str, str], _Parent], prefix: str, timeout: float
) -> Plan | None:
    sub = Subscription.model_validate(doc)
    ns = sub.metadata.namespace
    parent = channels.get((ns, sub.spec.channel.name))
    physical = sub.status.physical_subscription
    if parent is None or physical is None or not physical.subscriber_uri:
        return None
    delivery = effective_delivery(sub.spec.delivery, parent.delivery)
    dead_letter = _dead_letter(sub.spec.delivery, physical.dead_letter_sink_uri, parent)
    return Plan(
        kind="subscription",
        key=key,
        namespace=ns,
        name=sub.metadata.name,
        group=subscription_group(ns, sub.metadata.name, sub.metadata.uid),
        topic=channel_topic(ns, sub.spec.channel.name, prefix),
        created_ms=_ms(sub.metadata.creation_timestamp),
        start=StartPoint.from_status(sub.status),
        subscriber=physical.subscriber_uri,
        reply_to=physical.reply_uri,
        reply_topic=None,
        dead_letter=dead_letter,
        retry=RetryPolicy.from_spec(delivery, default_timeout=timeout),
        generation=sub.metadata.generation,
        ordered=sub.metadata.annotations.get(ORDER_ANNOTATION) == "ordered",
        dead_letter_topic=sub.metadata.annotations.get(DEAD_LETTER_TOPIC_ANNOTATION) or None,
        protection=_protection(key, sub.metadata.annotations),
        parent=sub.spec.channel.name,
        structured=delivery is not None and delivery.format == "json",
        ca_certs=_ca_certs(
            (physical.subscriber_uri, sub.spec.subscriber),
            (physical.reply_uri, sub.spec.reply),
            (dead_letter, delivery.dead_letter_sink if delivery else None),
        ),
    )
