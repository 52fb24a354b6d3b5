"""A Broker is Ready when its topic exists; a Trigger when its Broker is and the subscriber resolves."""

from __future__ import annotations

from typing import Any

from channel.control.reconcile import Addressing, reconcile
from channel.kafka import broker_topic
from channel.resources.manifests import parse_resource
from channel.resources.model import Resource

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


def _trigger(subscriber: dict[str, Any], broker: str = "default", ns: str = "ns") -> Resource:
    return _res(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "t", "namespace": ns},
            "spec": {"broker": broker, "subscriber": subscriber},
        }
    )


def _run(*resources: Resource, topics: set[str] | None = None) -> dict[str, Any]:
    by_key = {r.key: r for r in resources}
    if topics is None:
        topics = {
            broker_topic(r.metadata.namespace, r.metadata.name) for r in resources if r.kind == "Broker"
        }
    return {
        k: s.model_dump(by_alias=True, exclude_none=True)
        for k, s in reconcile(by_key, frozenset(topics), ADDR, "2026-01-01T00:00:00Z").items()
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
