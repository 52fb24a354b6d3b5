"""A start point recorded in a Trigger's or Subscription's status is carried over by every
reconcile, while the conditions around it are computed afresh."""

from __future__ import annotations

from channel.control.reconcile import Addressing, reconcile
from channel.kafka import broker_topic, channel_topic
from channel.resources.model import Broker, Channel, Resource, Subscription, Trigger
from channel.resources.start import START_OFFSETS, StartPoint

ADDR = Addressing(ingress_url="http://127.0.0.1:8080")
META = {"namespace": "ns", "uid": "u", "creationTimestamp": "2026-12-07T06:16:00Z"}


def _resources(start: StartPoint | None) -> dict[str, Resource]:
    trigger = Trigger.model_validate(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "t", **META},
            "spec": {"broker": "default", "subscriber": {"uri": "http://sink/"}},
        }
    )
    subscription = Subscription.model_validate(
        {
            "apiVersion": "messaging.knative.dev/v1",
            "kind": "Subscription",
            "metadata": {"name": "s", **META},
            "spec": {"channel": {"name": "c"}, "subscriber": {"uri": "http://sink/"}},
        }
    )
    if start is not None:
        trigger = trigger.model_copy(update={"status": start.in_status(trigger.status)})
        subscription = subscription.model_copy(update={"status": start.in_status(subscription.status)})
    parents: list[Resource] = [
        Broker.model_validate(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {"name": "default", **META},
            }
        ),
        Channel.model_validate(
            {"apiVersion": "messaging.knative.dev/v1", "kind": "Channel", "metadata": {"name": "c", **META}}
        ),
    ]
    return {r.key: r for r in [*parents, trigger, subscription]}


def _reconciled(resources: dict[str, Resource]) -> dict[str, StartPoint | None]:
    topics = frozenset({broker_topic("ns", "default"), channel_topic("ns", "c")})
    statuses = reconcile(resources, topics, ADDR, "2026-12-07T06:16:01Z")
    assert all(statuses[key].ready for key in ("Trigger/ns/t", "Subscription/ns/s"))
    return {key: StartPoint.from_status(statuses[key]) for key in ("Trigger/ns/t", "Subscription/ns/s")}


def test_a_recorded_start_point_is_kept() -> None:
    start = StartPoint.of({0: 150, 1: 147, 2: 153})
    assert _reconciled(_resources(start)) == {"Trigger/ns/t": start, "Subscription/ns/s": start}


def test_an_empty_start_point_is_kept_empty() -> None:
    assert _reconciled(_resources(StartPoint())) == {
        "Trigger/ns/t": StartPoint(),
        "Subscription/ns/s": StartPoint(),
    }


def test_none_is_made_up_for_a_resource_without_one() -> None:
    """A Trigger stored before start points were recorded keeps starting at its creation time."""
    assert _reconciled(_resources(None)) == {"Trigger/ns/t": None, "Subscription/ns/s": None}


def test_the_document_keeps_knatives_metadata_and_puts_the_start_point_in_status() -> None:
    trigger = _resources(StartPoint.of({0: 3}))["Trigger/ns/t"]
    document = trigger.document()
    assert document["metadata"]["creationTimestamp"] == "2026-12-07T06:16:00Z"
    assert "annotations" not in document["metadata"] or not document["metadata"]["annotations"]
    assert document["status"]["annotations"] == {START_OFFSETS: "0:3"}
