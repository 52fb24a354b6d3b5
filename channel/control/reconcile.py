"""Reconciliation: from the set of resources and the topics that exist, every resource's status.

Pure: no I/O, no clock (the caller passes `now`). The controller calls it after every change and
periodically, and writes back only the statuses that changed. Readiness follows Knative: a
Broker is Ready when its topic exists; a Trigger when its Broker is Ready and its subscriber
(and dead-letter sink, if any) resolve to URLs that the destination policy allows (a URL whose
host is a denied address or name makes its condition False with reason DestinationDenied; the
dispatcher checks the addresses a name resolves to on every connection). What the controller
recorded rather than computed, a Trigger's or Subscription's status annotations (its start
point, `channel.resources.start`), is carried over as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from channel.destinations import DestinationPolicy
from channel.kafka import broker_topic, channel_topic
from channel.resources.delivery import effective_delivery
from channel.resources.destination import Destination, KReference, resolve_destination
from channel.resources.model import (
    Addressable,
    Broker,
    Channel,
    Condition,
    PhysicalSubscription,
    PingSource,
    Resource,
    Status,
    SubscriberSpec,
    SubscriberStatus,
    Subscription,
    Trigger,
)

__all__ = [
    "DESTINATION_DENIED",
    "Addressing",
    "broker_address",
    "channel_address",
    "channel_subscribers",
    "reconcile",
]

# The reason of a condition whose destination the policy (KANAL_DELIVERY_DENY) denies.
DESTINATION_DENIED = "DestinationDenied"


@dataclass(frozen=True, slots=True)
class Addressing:
    """How addresses are formed: the ingress base URL and the template for Service refs."""

    ingress_url: str
    service_url_template: str = "http://{name}.{namespace}.svc.cluster.local/"
    topic_prefix: str = "knative-broker"
    channel_topic_prefix: str = "knative-channel"


def broker_address(addressing: Addressing, namespace: str, name: str) -> str:
    return f"{addressing.ingress_url.rstrip('/')}/{namespace}/{name}"


def channel_address(addressing: Addressing, namespace: str, name: str) -> str:
    return f"{addressing.ingress_url.rstrip('/')}/channels/{namespace}/{name}"


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


def _allowed(cond: Condition, what: str, url: str | None, policy: DestinationPolicy | None) -> Condition:
    """`cond`, or, when the policy denies the destination it resolved to, that condition False
    with reason DestinationDenied and a message naming the rule."""
    if policy is None or url is None or cond.status != "True":
        return cond
    why = policy.denied_url(url)
    if why is None:
        return cond
    return _condition(cond.type, False, DESTINATION_DENIED, f"{what} {url}: {why}")


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
    policy: DestinationPolicy | None = None,
) -> dict[str, Status]:
    """The status every resource should have, keyed like `resources`; `policy`: destinations
    that are not to be delivered to."""
    brokers = {
        (r.metadata.namespace, r.metadata.name): r for r in resources.values() if isinstance(r, Broker)
    }
    statuses: dict[str, Status] = {}
    ready_brokers: dict[tuple[str, str], str] = {}
    ready_channels: dict[tuple[str, str], str] = {}
    for channel in (r for r in resources.values() if isinstance(r, Channel)):
        ns, name = channel.metadata.namespace, channel.metadata.name
        topic = channel_topic(ns, name, addressing.channel_topic_prefix)
        if topic in topics:
            ready_channels[(ns, name)] = channel_address(addressing, ns, name)

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
            _Addresses(ready_brokers, ready_channels),
            policy,
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

    addresses = _Addresses(ready_brokers, ready_channels)
    for key, chan in ((k, r) for k, r in resources.items() if isinstance(r, Channel)):
        ns, name = chan.metadata.namespace, chan.metadata.name
        topic_cond = (
            _condition("TopicReady", True)
            if (ns, name) in ready_channels
            else _condition(
                "TopicReady",
                False,
                "TopicNotReady",
                f"topic {channel_topic(ns, name, addressing.channel_topic_prefix)} does not exist yet",
            )
        )
        dls, dls_cond = _dead_letter(
            chan.spec.delivery.dead_letter_sink if chan.spec.delivery else None,
            ns,
            addressing,
            addresses,
            policy,
        )
        conds = [topic_cond, dls_cond]
        ready = _ready(conds)
        statuses[key] = Status(
            observedGeneration=chan.metadata.generation,
            conditions=_with_times([ready, *conds], chan.status, now),
            address=Addressable(url=ready_channels[(ns, name)]) if ready.status == "True" else None,
            deadLetterSinkUri=dls,
        )

    channels = {
        (r.metadata.namespace, r.metadata.name): r for r in resources.values() if isinstance(r, Channel)
    }
    for key, sub in ((k, r) for k, r in resources.items() if isinstance(r, Subscription)):
        ns = sub.metadata.namespace
        chan_name = sub.spec.channel.name
        parent = channels.get((ns, chan_name))
        if parent is None:
            chan_cond = _condition(
                "ChannelReady",
                False,
                "ChannelDoesNotExist",
                f'{sub.spec.channel.kind} "{chan_name}" does not exist',
            )
        elif (ns, chan_name) not in ready_channels:
            chan_cond = _condition(
                "ChannelReady", False, "ChannelNotReady", f'Channel "{chan_name}" is not ready'
            )
        else:
            chan_cond = _condition("ChannelReady", True)
        subscriber = _resolve(sub.spec.subscriber, ns, addressing, addresses)
        sub_cond = (
            _condition("SubscriberResolved", True)
            if subscriber
            else _condition(
                "SubscriberResolved",
                False,
                "Unresolved",
                f"cannot resolve subscriber {_describe(sub.spec.subscriber)}",
            )
        )
        sub_cond = _allowed(sub_cond, "subscriber", subscriber, policy)
        reply = _resolve(sub.spec.reply, ns, addressing, addresses) if sub.spec.reply else None
        reply_cond = (
            _condition(
                "ReplyResolved", False, "Unresolved", f"cannot resolve reply {_describe(sub.spec.reply)}"
            )
            if sub.spec.reply is not None and reply is None
            else _allowed(_condition("ReplyResolved", True), "reply", reply, policy)
        )
        delivery = effective_delivery(sub.spec.delivery, parent.spec.delivery if parent else None)
        dls, dls_cond = _dead_letter(
            delivery.dead_letter_sink if delivery else None, ns, addressing, addresses, policy
        )
        conds = [chan_cond, sub_cond, reply_cond, dls_cond]
        statuses[key] = Status(
            observedGeneration=sub.metadata.generation,
            conditions=_with_times([_ready(conds), *conds], sub.status, now),
            physicalSubscription=PhysicalSubscription(
                subscriberUri=subscriber, replyUri=reply, deadLetterSinkUri=dls
            ),
            annotations=sub.status.annotations,
        )
    _fill_channel_subscribers(resources, statuses)

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
        subscriber = _resolve(trigger.spec.subscriber, ns, addressing, addresses)
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
        sub_cond = _allowed(sub_cond, "subscriber", subscriber, policy)
        dls, dls_cond = _dead_letter(
            trigger.spec.delivery.dead_letter_sink if trigger.spec.delivery else None,
            ns,
            addressing,
            addresses,
            policy,
        )
        conds = [broker_cond, sub_cond, dls_cond]
        statuses[key] = Status(
            observedGeneration=trigger.metadata.generation,
            conditions=_with_times([_ready(conds), *conds], trigger.status, now),
            subscriberUri=subscriber,
            deadLetterSinkUri=dls,
            annotations=trigger.status.annotations,
        )

    for key, source in ((k, r) for k, r in resources.items() if isinstance(r, PingSource)):
        sink = _resolve(source.spec.sink, source.metadata.namespace, addressing, addresses)
        sink_cond = (
            _condition("SinkProvided", True)
            if sink
            else _condition(
                "SinkProvided", False, "NotFound", f"cannot resolve sink {_describe(source.spec.sink)}"
            )
        )
        sink_cond = _allowed(sink_cond, "sink", sink, policy)
        statuses[key] = Status(
            observedGeneration=source.metadata.generation,
            conditions=_with_times([_ready([sink_cond]), sink_cond], source.status, now),
            sinkUri=sink,
        )
    return statuses


@dataclass(frozen=True, slots=True)
class _Addresses:
    brokers: Mapping[tuple[str, str], str]
    channels: Mapping[tuple[str, str], str]


def _fill_channel_subscribers(resources: Mapping[str, Resource], statuses: dict[str, Status]) -> None:
    """A Channel's status lists each of its Subscriptions and whether it is ready (SUB-10)."""
    by_channel: dict[tuple[str, str], list[SubscriberStatus]] = {}
    for key, sub in resources.items():
        if isinstance(sub, Subscription):
            ready = statuses[key].condition("Ready")
            by_channel.setdefault((sub.metadata.namespace, sub.spec.channel.name), []).append(
                SubscriberStatus(
                    uid=sub.metadata.uid,
                    observedGeneration=sub.metadata.generation,
                    ready=ready.status if ready else "Unknown",
                    message=ready.message if ready else "",
                )
            )
    for key, chan in resources.items():
        if isinstance(chan, Channel):
            subs = by_channel.get((chan.metadata.namespace, chan.metadata.name), [])
            statuses[key] = statuses[key].model_copy(
                update={"subscribers": sorted(subs, key=lambda s: s.uid)}
            )


def channel_subscribers(
    resources: Mapping[str, Resource], statuses: Mapping[str, Status]
) -> dict[str, list[SubscriberSpec]]:
    """Each Channel's `spec.subscribers`, filled from its Subscriptions (SUB-10)."""
    out: dict[str, list[SubscriberSpec]] = {
        key: [] for key, res in resources.items() if isinstance(res, Channel)
    }
    keys = {
        (r.metadata.namespace, r.metadata.name): k for k, r in resources.items() if isinstance(r, Channel)
    }
    for key, sub in resources.items():
        if not isinstance(sub, Subscription):
            continue
        chan_key = keys.get((sub.metadata.namespace, sub.spec.channel.name))
        physical = statuses[key].physical_subscription if key in statuses else None
        if chan_key is None:
            continue
        out[chan_key].append(
            SubscriberSpec(
                uid=sub.metadata.uid,
                generation=sub.metadata.generation,
                subscriberUri=physical.subscriber_uri if physical else None,
                replyUri=physical.reply_uri if physical else None,
                delivery=sub.spec.delivery,
            )
        )
    for subs in out.values():
        subs.sort(key=lambda s: s.uid)
    return out


def _describe(dest: Destination | None) -> str:
    if dest is None:
        return ""
    if dest.ref is not None:
        return f"{dest.ref.kind} {dest.ref.name}"
    return str(dest.uri)


def _resolve(dest: Destination, namespace: str, addressing: Addressing, addresses: _Addresses) -> str | None:
    def by_ref(ref: KReference, ns: str) -> str | None:
        if ref.kind == "Service":
            return addressing.service_url_template.format(name=ref.name, namespace=ns)
        if ref.kind == "Broker" and ref.api_version.startswith("eventing.knative.dev/"):
            return addresses.brokers.get((ns, ref.name))
        if ref.kind in ("Channel", "KafkaChannel") and ref.api_version.startswith("messaging.knative.dev/"):
            return addresses.channels.get((ns, ref.name))
        return None

    return resolve_destination(dest, namespace, by_ref)


def _dead_letter(
    dest: Destination | None,
    namespace: str,
    addressing: Addressing,
    addresses: _Addresses,
    policy: DestinationPolicy | None,
) -> tuple[str | None, Condition]:
    if dest is None:
        return None, _condition("DeadLetterSinkResolved", True, "DeadLetterSinkNotConfigured")
    url = _resolve(dest, namespace, addressing, addresses)
    if url is None:
        return None, _condition(
            "DeadLetterSinkResolved",
            False,
            "Unresolved",
            f"cannot resolve dead-letter sink {_describe(dest)}",
        )
    return url, _allowed(_condition("DeadLetterSinkResolved", True), "dead-letter sink", url, policy)
