"""What the dispatcher should run, derived from the resource log.

Pure: `plans_from_documents` turns stored resources into one `TriggerPlan` per Ready Trigger,
with its filter compiled once. The service compares plans: a change of group or topic means a
new consumer; a change of filter, subscriber or delivery is applied to the running consumer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channel.resources.delivery import DeliverySpec, effective_delivery

from channel.errors import ValidationError
from channel.filters import Filter, compile_trigger_filter
from channel.kafka import broker_topic, trigger_group
from channel.resources.model import Broker, Trigger
from dispatcher.retry import RetryPolicy

__all__ = ["TriggerPlan", "plans_from_documents"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TriggerPlan:
    """Everything one Trigger's consumer needs, compiled."""

    key: str
    namespace: str
    name: str
    group: str
    topic: str
    created_ms: int
    subscriber: str
    reply_to: str  # the Broker's address: replies are stored in its topic
    dead_letter: str | None
    filter: Filter = field(compare=False)
    retry: RetryPolicy
    generation: int = 0

    @property
    def identity(self) -> tuple[str, str]:
        """What a running consumer cannot change without being recreated."""
        return (self.group, self.topic)


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


def plans_from_documents(
    documents: Mapping[str, Mapping[str, Any]],
    *,
    topic_prefix: str,
    default_timeout: float,
) -> dict[str, TriggerPlan]:
    """One plan per Ready Trigger whose Broker is Ready."""
    brokers: dict[tuple[str, str], tuple[DeliverySpec | None, str | None, str]] = {}
    for key, doc in documents.items():
        if key.startswith("Broker/") and _ready(doc):
            try:
                broker = Broker.model_validate(doc)
            except ValueError:
                continue
            brokers[(broker.metadata.namespace, broker.metadata.name)] = (
                broker.spec.delivery,
                broker.status.dead_letter_sink_uri,
                broker.status.address.url if broker.status.address else "",
            )
    plans: dict[str, TriggerPlan] = {}
    for key, doc in documents.items():
        if not key.startswith("Trigger/") or not _ready(doc):
            continue
        try:
            trigger = Trigger.model_validate(doc)
            ns = trigger.metadata.namespace
            if (ns, trigger.spec.broker) not in brokers or not trigger.status.subscriber_uri:
                continue
            spec_filter = trigger.spec.filter.model_dump() if trigger.spec.filter else None
            compiled = compile_trigger_filter(spec_filter, trigger.spec.filters)
        except (ValueError, ValidationError) as exc:
            log.error("cannot run %s: %s", key, exc)
            continue
        broker_delivery, broker_dls, broker_url = brokers[(ns, trigger.spec.broker)]
        delivery = effective_delivery(trigger.spec.delivery, broker_delivery)
        # A Trigger with any delivery field replaces its Broker's delivery wholesale, the
        # dead-letter sink included (DLV-15).
        own = trigger.spec.delivery is not None and not trigger.spec.delivery.is_empty()
        dead_letter = trigger.status.dead_letter_sink_uri if own else broker_dls
        plans[key] = TriggerPlan(
            key=key,
            namespace=ns,
            name=trigger.metadata.name,
            group=trigger_group(ns, trigger.metadata.name, trigger.metadata.uid),
            topic=broker_topic(ns, trigger.spec.broker, topic_prefix),
            created_ms=_ms(trigger.metadata.creation_timestamp),
            subscriber=trigger.status.subscriber_uri,
            reply_to=broker_url,
            dead_letter=dead_letter,
            filter=compiled,
            retry=RetryPolicy.from_spec(delivery, default_timeout=default_timeout),
            generation=trigger.metadata.generation,
        )
    return plans
