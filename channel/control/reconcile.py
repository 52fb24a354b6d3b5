"""Reconciliation: from the set of resources and the topics that exist, every resource's status.

Pure: no I/O, no clock (the caller passes `now`). The controller calls it after every change and
periodically, and writes back only the statuses that changed. Readiness follows Knative: a
Broker is Ready when its topic exists; a Trigger when its Broker is Ready and its subscriber
(and dead-letter sink, if any) resolve to URLs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from channel.kafka import broker_topic
from channel.resources.destination import Destination, KReference, resolve_destination
from channel.resources.model import Addressable, Broker, Condition, Resource, Status, Trigger

__all__ = ["Addressing", "broker_address", "reconcile"]


@dataclass(frozen=True, slots=True)
class Addressing:
    """How addresses are formed: the ingress base URL and the template for Service refs."""

    ingress_url: str
    service_url_template: str = "http://{name}.{namespace}.svc.cluster.local/"
    topic_prefix: str = "knative-broker"


def broker_address(addressing: Addressing, namespace: str, name: str) -> str:
    return f"{addressing.ingress_url.rstrip('/')}/{namespace}/{name}"


def _condition(type_: str, ok: bool, reason: str = "", message: str = "") -> Condition:
    return Condition(type=type_, status="True" if ok else "False", reason=reason, message=message)


def _with_times(new: list[Condition], old: Status, now: str) -> list[Condition]:
    """Keep lastTransitionTime unless the condition's status changed."""
    out = []
    for cond in new:
        before = old.condition(cond.type)
        keep = before is not None and before.status == cond.status and before.last_transition_time
        stamp = before.last_transition_time if keep and before is not None else now
        out.append(cond.model_copy(update={"last_transition_time": stamp}))
    return out


def _ready(conditions: list[Condition]) -> Condition:
    for cond in conditions:
        if cond.status != "True":
            return _condition("Ready", False, cond.reason, cond.message)
    return _condition("Ready", True)


def reconcile(
    resources: Mapping[str, Resource],
    topics: frozenset[str],
    addressing: Addressing,
    now: str,
) -> dict[str, Status]:
    """The status every resource should have, keyed like `resources`."""
    brokers = {
        (r.metadata.namespace, r.metadata.name): r for r in resources.values() if isinstance(r, Broker)
    }
    statuses: dict[str, Status] = {}
    ready_brokers: dict[tuple[str, str], str] = {}

    for key, broker in ((k, r) for k, r in resources.items() if isinstance(r, Broker)):
        ns, name = broker.metadata.namespace, broker.metadata.name
        topic = broker_topic(ns, name, addressing.topic_prefix)
        conds = [
            _condition("TopicReady", topic in topics, "TopicNotReady", f"topic {topic} does not exist yet")
            if topic not in topics
            else _condition("TopicReady", True)
        ]
        dls, dls_ok = _dead_letter(
            broker.spec.delivery.dead_letter_sink if broker.spec.delivery else None,
            ns,
            addressing,
            ready_brokers,
        )
        conds.append(dls_ok)
        ready = _ready(conds)
        if ready.status == "True":
            ready_brokers[(ns, name)] = broker_address(addressing, ns, name)
        statuses[key] = Status(
            observedGeneration=broker.metadata.generation,
            conditions=_with_times([ready, *conds], broker.status, now),
            address=Addressable(url=ready_brokers[(ns, name)]) if ready.status == "True" else None,
            deadLetterSinkUri=dls,
        )

    for key, trigger in ((k, r) for k, r in resources.items() if isinstance(r, Trigger)):
        ns = trigger.metadata.namespace
        broker_name = trigger.spec.broker
        if (ns, broker_name) not in brokers:
            broker_cond = _condition(
                "BrokerReady", False, "BrokerDoesNotExist", f'Broker "{broker_name}" does not exist'
            )
        elif (ns, broker_name) not in ready_brokers:
            broker_cond = _condition(
                "BrokerReady", False, "BrokerNotReady", f'Broker "{broker_name}" is not ready'
            )
        else:
            broker_cond = _condition("BrokerReady", True)
        subscriber = _resolve(trigger.spec.subscriber, ns, addressing, ready_brokers)
        sub_cond = (
            _condition("SubscriberResolved", True)
            if subscriber
            else _condition(
                "SubscriberResolved",
                False,
                "Unresolved",
                f"cannot resolve subscriber {_describe(trigger.spec.subscriber)}",
            )
        )
        dls, dls_cond = _dead_letter(
            trigger.spec.delivery.dead_letter_sink if trigger.spec.delivery else None,
            ns,
            addressing,
            ready_brokers,
        )
        conds = [broker_cond, sub_cond, dls_cond]
        statuses[key] = Status(
            observedGeneration=trigger.metadata.generation,
            conditions=_with_times([_ready(conds), *conds], trigger.status, now),
            subscriberUri=subscriber,
            deadLetterSinkUri=dls,
        )
    return statuses


def _describe(dest: Destination) -> str:
    if dest.ref is not None:
        return f"{dest.ref.kind} {dest.ref.name}"
    return str(dest.uri)


def _resolve(
    dest: Destination,
    namespace: str,
    addressing: Addressing,
    ready_brokers: Mapping[tuple[str, str], str],
) -> str | None:
    def by_ref(ref: KReference, ns: str) -> str | None:
        if ref.kind == "Service":
            return addressing.service_url_template.format(name=ref.name, namespace=ns)
        if ref.kind == "Broker" and ref.api_version.startswith("eventing.knative.dev/"):
            return ready_brokers.get((ns, ref.name))
        return None

    return resolve_destination(dest, namespace, by_ref)


def _dead_letter(
    dest: Destination | None,
    namespace: str,
    addressing: Addressing,
    ready_brokers: Mapping[tuple[str, str], str],
) -> tuple[str | None, Condition]:
    if dest is None:
        return None, _condition("DeadLetterSinkResolved", True, "DeadLetterSinkNotConfigured")
    url = _resolve(dest, namespace, addressing, ready_brokers)
    if url is None:
        return None, _condition(
            "DeadLetterSinkResolved",
            False,
            "Unresolved",
            f"cannot resolve dead-letter sink {_describe(dest)}",
        )
    return url, _condition("DeadLetterSinkResolved", True)
