"""A Broker is Ready when its topic exists; a Trigger when its Broker is and the subscriber resolves."""

from __future__ import annotations

from typing import Any

import pytest

from channel.control.reconcile import Addressing, reconcile
from channel.destinations import DestinationPolicy
from channel.kafka import broker_topic, channel_topic
from channel.resources.manifests import parse_resource
from channel.resources.model import Resource
from channel.settings import Settings

ADDR = Addressing(ingress_url="http://127.0.0.1:8080")


def _res(doc: dict[str, Any]) -> Resource:
    parsed = parse_resource(doc)
    assert isinstance(parsed, Resource)
    return parsed


def _broker(name: str = "default", ns: str = "ns") -> Resource:
    return _res(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": name, "namespace": ns},
        }
    )


def _trigger(
    subscriber: dict[str, Any],
    broker: str = "default",
    ns: str = "ns",
    dead_letter_sink: dict[str, Any] | None = None,
) -> Resource:
    spec: dict[str, Any] = {"broker": broker, "subscriber": subscriber}
    if dead_letter_sink is not None:
        spec["delivery"] = {"deadLetterSink": dead_letter_sink}
    return _res(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "t", "namespace": ns},
            "spec": spec,
        }
    )


def _run(
    *resources: Resource, topics: set[str] | None = None, policy: DestinationPolicy | None = None
) -> dict[str, Any]:
    by_key = {r.key: r for r in resources}
    if topics is None:
        topics = {
            broker_topic(r.metadata.namespace, r.metadata.name) for r in resources if r.kind == "Broker"
        }
    return {
        k: s.model_dump(by_alias=True, exclude_none=True)
        for k, s in reconcile(by_key, frozenset(topics), ADDR, "2026-01-01T00:00:00Z", policy).items()
    }


def _ready(status: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in status["conditions"] if c["type"] == "Ready")
    return cond["status"], cond["reason"]


def test_broker_ready_with_topic_has_address() -> None:
    status = _run(_broker())["Broker/ns/default"]
    assert _ready(status) == ("True", "")
    assert status["address"]["url"] == "http://127.0.0.1:8080/ns/default"


def test_broker_without_topic_is_not_ready_and_has_no_address() -> None:
    status = _run(_broker(), topics=set())["Broker/ns/default"]
    assert _ready(status) == ("False", "TopicNotReady")
    assert "address" not in status


def test_trigger_ready_with_uri_subscriber() -> None:
    status = _run(_broker(), _trigger({"uri": "http://sink:1/"}))["Trigger/ns/t"]
    assert _ready(status) == ("True", "")
    assert status["subscriberUri"] == "http://sink:1/"


def test_trigger_before_its_broker_names_the_broker() -> None:
    status = _run(_trigger({"uri": "http://sink:1/"}))["Trigger/ns/t"]
    assert _ready(status) == ("False", "BrokerDoesNotExist")
    assert '"default"' in next(c for c in status["conditions"] if c["type"] == "Ready")["message"]


def test_service_ref_resolves_by_template_with_relative_uri() -> None:
    status = _run(
        _broker(),
        _trigger(
            {
                "ref": {"apiVersion": "v1", "kind": "Service", "name": "display"},
                "uri": "/extra/path",
            }
        ),
    )["Trigger/ns/t"]
    assert status["subscriberUri"] == "http://display.ns.svc.cluster.local/extra/path"


def test_unresolvable_ref_is_not_ready_without_uri() -> None:
    status = _run(_broker(), _trigger({"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}))[
        "Trigger/ns/t"
    ]
    assert _ready(status) == ("False", "Unresolved")
    assert "subscriberUri" not in status


def test_broker_ref_resolves_to_its_address() -> None:
    status = _run(
        _broker(),
        _broker("other"),
        _trigger({"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "other"}}),
    )["Trigger/ns/t"]
    assert status["subscriberUri"] == "http://127.0.0.1:8080/ns/other"


def test_transition_time_kept_while_status_unchanged() -> None:
    broker = _broker()
    first = reconcile({broker.key: broker}, frozenset({broker_topic("ns", "default")}), ADDR, "T1")
    stored = broker.model_copy(update={"status": first[broker.key]})
    second = reconcile({broker.key: stored}, frozenset({broker_topic("ns", "default")}), ADDR, "T2")
    assert second[broker.key] == first[broker.key]


def _channel(name: str = "orders", delivery: dict[str, Any] | None = None, ns: str = "ns") -> Resource:
    spec = {"delivery": delivery} if delivery else {}
    return _res(
        {
            "apiVersion": "messaging.knative.dev/v1",
            "kind": "Channel",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )


def _subscription(name: str, spec: dict[str, Any], ns: str = "ns") -> Resource:
    channel = {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "name": "orders"}
    return _res(
        {
            "apiVersion": "messaging.knative.dev/v1",
            "kind": "Subscription",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"channel": channel, **spec},
        }
    )


TOPICS = {broker_topic("ns", "default"), channel_topic("ns", "orders")}
BROKER_REF = {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}}
UNRESOLVABLE = {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}}


def test_dead_letter_sinks_are_resolved_on_broker_trigger_and_channel() -> None:
    """DLV-06: each resolves its own deadLetterSink into status.deadLetterSinkUri."""
    broker = _res(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "default", "namespace": "ns"},
            "spec": {"delivery": {"deadLetterSink": {"uri": "http://broker-dls:1/"}}},
        }
    )
    trigger = _trigger({"uri": "http://sink:1/"}, dead_letter_sink={**BROKER_REF, "uri": "/dead"})
    channel = _channel(delivery={"deadLetterSink": {"uri": "http://channel-dls:1/"}})
    statuses = _run(broker, trigger, channel, topics=TOPICS)
    assert statuses["Broker/ns/default"]["deadLetterSinkUri"] == "http://broker-dls:1/"
    assert statuses["Trigger/ns/t"]["deadLetterSinkUri"] == "http://127.0.0.1:8080/ns/default/dead"
    assert statuses["Channel/ns/orders"]["deadLetterSinkUri"] == "http://channel-dls:1/"
    assert all(_ready(s) == ("True", "") for s in statuses.values())


def test_an_unresolvable_dead_letter_sink_keeps_a_trigger_from_ready() -> None:
    status = _run(_broker(), _trigger({"uri": "http://sink:1/"}, dead_letter_sink=UNRESOLVABLE))[
        "Trigger/ns/t"
    ]
    assert _ready(status)[0] == "False"
    assert "deadLetterSinkUri" not in status


def test_a_subscription_before_its_channel_is_not_ready_and_says_why() -> None:
    """SUB-06."""
    status = _run(_subscription("s", {"subscriber": {"uri": "http://sink:1/"}}))["Subscription/ns/s"]
    assert _ready(status) == ("False", "ChannelDoesNotExist")
    assert '"orders"' in next(c for c in status["conditions"] if c["type"] == "Ready")["message"]
    without_topic = _run(
        _channel(), _subscription("s", {"subscriber": {"uri": "http://sink:1/"}}), topics=set()
    )
    assert _ready(without_topic["Subscription/ns/s"]) == ("False", "ChannelNotReady")


def test_a_subscription_resolves_subscriber_reply_and_dead_letter_sink() -> None:
    """SUB-07: the three URIs in status.physicalSubscription; the dead-letter sink may come from
    the Channel's delivery; an unresolvable reply keeps it from Ready and leaves replyUri out."""
    statuses = _run(
        _broker(),
        _channel(delivery={"deadLetterSink": {"uri": "http://channel-dls:1/"}}),
        _subscription("resolved", {"subscriber": {"uri": "http://sink:1/"}, "reply": BROKER_REF}),
        _subscription("unresolved", {"subscriber": {"uri": "http://sink:1/"}, "reply": UNRESOLVABLE}),
        topics=TOPICS,
    )
    resolved = statuses["Subscription/ns/resolved"]
    assert _ready(resolved) == ("True", "")
    assert resolved["physicalSubscription"] == {
        "subscriberUri": "http://sink:1/",
        "replyUri": "http://127.0.0.1:8080/ns/default",
        "deadLetterSinkUri": "http://channel-dls:1/",
    }
    unresolved = statuses["Subscription/ns/unresolved"]
    assert _ready(unresolved) == ("False", "Unresolved")
    assert "replyUri" not in unresolved["physicalSubscription"]


# The default rules, Kanal's own ports (controller 8081, dispatcher 8082) and one name.
POLICY = DestinationPolicy.from_settings(Settings(delivery_deny="169.254.0.0/16,fe80::/10,metadata.internal"))
METADATA = {"uri": "http://169.254.169.254/latest/meta-data"}


def _ping_source(sink: dict[str, Any]) -> Resource:
    return _res(
        {
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSource",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"schedule": "* * * * *", "sink": sink},
        }
    )


@pytest.mark.parametrize(
    ("resource", "key", "condition", "rule"),
    [
        pytest.param(
            _trigger(METADATA),
            "Trigger/ns/t",
            "SubscriberResolved",
            "KANAL_DELIVERY_DENY 169.254.0.0/16",
            id="trigger",
        ),
        pytest.param(
            _trigger({"uri": "http://sink:1/"}, dead_letter_sink={"uri": "http://127.0.0.1:8081/v1/apply"}),
            "Trigger/ns/t",
            "DeadLetterSinkResolved",
            "the controller's admin API",
            id="trigger-dead-letter-sink",
        ),
        pytest.param(
            _subscription("s", {"subscriber": {"uri": "http://[fe80::1]/"}}),
            "Subscription/ns/s",
            "SubscriberResolved",
            "fe80::/10",
            id="subscription",
        ),
        pytest.param(
            _subscription(
                "s", {"subscriber": {"uri": "http://sink:1/"}, "reply": {"uri": "http://metadata.internal/"}}
            ),
            "Subscription/ns/s",
            "ReplyResolved",
            "KANAL_DELIVERY_DENY metadata.internal",
            id="subscription-reply",
        ),
        pytest.param(
            _channel(delivery={"deadLetterSink": {"uri": "http://localhost:8082/metrics"}}),
            "Channel/ns/orders",
            "DeadLetterSinkResolved",
            "the dispatcher's health and metrics",
            id="channel-dead-letter-sink",
        ),
        pytest.param(
            _ping_source(METADATA), "PingSource/ns/p", "SinkProvided", "169.254.0.0/16", id="pingsource"
        ),
    ],
)
def test_a_denied_destination_is_not_ready_and_names_the_rule(
    resource: Resource, key: str, condition: str, rule: str
) -> None:
    status = _run(_broker(), _channel(), resource, topics=TOPICS, policy=POLICY)[key]
    assert _ready(status) == ("False", "DestinationDenied")
    found = next(c for c in status["conditions"] if c["type"] == condition)
    assert found["status"] == "False" and found["reason"] == "DestinationDenied"
    assert "denied by the destination policy" in found["message"] and rule in found["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["message"] == found["message"]


def test_loopback_subscribers_and_the_ingress_are_allowed() -> None:
    """kanal dev's subscribers are on 127.0.0.1, and a Trigger may deliver to a Broker."""
    statuses = _run(
        _broker(),
        _trigger({"uri": "http://127.0.0.1:9000/"}, dead_letter_sink={**BROKER_REF, "uri": "/dead"}),
        _ping_source(BROKER_REF),
        policy=POLICY,
    )
    assert _ready(statuses["Trigger/ns/t"]) == ("True", "")
    assert _ready(statuses["PingSource/ns/p"]) == ("True", "")
