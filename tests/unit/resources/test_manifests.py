"""Manifest parsing and validation: Knative's manifests apply unchanged; every problem is named."""

from __future__ import annotations

import pytest

from channel.errors import ValidationError
from channel.resources.manifests import Skipped, load_documents, parse_documents, parse_resource
from channel.resources.model import Broker, Channel, TopicSpec, Trigger

KNATIVE_TRIGGER = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: hello-display
  namespace: event-example
spec:
  broker: default
  filter:
    attributes:
      type: greeting
  subscriber:
    ref:
      apiVersion: v1
      kind: Service
      name: hello-display
"""

KNATIVE_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello-display
  namespace: event-example
spec:
  replicas: 1
"""


def test_knative_trigger_parses_unchanged() -> None:
    [doc] = load_documents(KNATIVE_TRIGGER)
    trigger = parse_resource(doc)
    assert isinstance(trigger, Trigger)
    assert trigger.spec.broker == "default"
    assert trigger.spec.filter is not None and trigger.spec.filter.attributes == {"type": "greeting"}
    assert trigger.spec.subscriber.ref is not None and trigger.spec.subscriber.ref.kind == "Service"
    assert trigger.key == "Trigger/event-example/hello-display"


def test_other_kubernetes_kinds_are_skipped() -> None:
    [doc] = load_documents(KNATIVE_DEPLOYMENT)
    skipped = parse_resource(doc)
    assert isinstance(skipped, Skipped)
    assert str(skipped) == "skipped Deployment hello-display (apps/v1): not an eventing resource"


def test_broker_defaults_namespace() -> None:
    broker = parse_resource(
        {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "default"}}
    )
    assert isinstance(broker, Broker) and broker.metadata.namespace == "default"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": "t"},
                "spec": {"subscriber": {"uri": "http://x/"}},
            },
            "spec.broker",
            id="missing-broker",
        ),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": "t"},
                "spec": {"broker": "b"},
            },
            "spec.subscriber",
            id="missing-subscriber",
        ),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": "t"},
                "spec": {"broker": "b", "subscriber": {"uri": "not a url"}},
            },
            "spec.subscriber",
            id="relative-uri-without-ref",
        ),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {"name": "Bad_Name"},
            },
            "metadata.name",
            id="bad-name",
        ),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {"name": "b"},
                "spec": {"colour": "red"},
            },
            "spec.colour",
            id="unknown-field",
        ),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": "t"},
                "spec": {
                    "broker": "b",
                    "subscriber": {"uri": "http://x/"},
                    "filter": {"attributes": {"Type": "x"}},
                },
            },
            "spec.filter.attributes",
            id="bad-filter-key",
        ),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Sequence",
                "metadata": {"name": "s"},
            },
            "kind",
            id="unserved-knative-kind",
        ),
        pytest.param({"kind": "Broker", "metadata": {"name": "s"}}, "apiVersion", id="no-api-version"),
        pytest.param(
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": "t"},
                "spec": {"broker": "b", "subscriber": {"uri": "https://x/", "CACerts": "not PEM"}},
            },
            "spec.subscriber.CACerts: CACerts must be PEM-encoded CA certificates",
            id="ca-certs-not-pem",
        ),
    ],
)
def test_invalid_resources_name_the_field(doc: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_resource(doc)
    assert any(expected in str(p) for p in info.value.problems), info.value.problems


def test_all_problems_of_all_documents_are_reported() -> None:
    docs = [
        (
            "a.yaml document 1",
            {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "ok"}},
        ),
        (
            "a.yaml document 2",
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": "t1"},
                "spec": {},
            },
        ),
        (
            "b.yaml document 1",
            {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "X"}},
        ),
    ]
    with pytest.raises(ValidationError) as info:
        parse_documents(docs)
    text = str(info.value)
    assert "a.yaml document 2" in text and "spec.broker" in text and "spec.subscriber" in text
    assert "b.yaml document 1" in text and "metadata.name" in text


def test_duplicate_resources_in_one_apply_are_rejected() -> None:
    doc = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "metadata": {"name": "b"}}
    with pytest.raises(ValidationError, match="appears twice"):
        parse_documents([("1", doc), ("2", doc)])


def test_status_in_a_manifest_is_ignored() -> None:
    broker = parse_resource(
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "b"},
            "status": {"address": {"url": "http://evil/"}},
        }
    )
    assert isinstance(broker, Broker) and broker.status.address is None


def test_yaml_syntax_error_names_the_source() -> None:
    with pytest.raises(ValidationError, match=r"f\.yaml: invalid YAML"):
        load_documents("a: [", "f.yaml")


def _broker_with(delivery: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b"},
        "spec": {"delivery": delivery},
    }


@pytest.mark.parametrize(
    ("delivery", "field"),
    [
        pytest.param({"retry": -1}, "retry", id="negative-retry"),
        pytest.param({"backoffPolicy": "random"}, "backoffPolicy", id="unknown-policy"),
        pytest.param({"backoffDelay": "2s"}, "backoffDelay", id="delay-not-iso8601"),
        pytest.param({"timeout": "PT0S"}, "timeout", id="zero-timeout"),
        pytest.param({"timeout": "10"}, "timeout", id="timeout-not-iso8601"),
        pytest.param({"retryAfterMax": "soon"}, "retryAfterMax", id="retry-after-max-not-iso8601"),
        pytest.param({"format": "xml"}, "format", id="unknown-format"),
    ],
)
def test_invalid_delivery_specs_are_rejected_naming_the_field(
    delivery: dict[str, object], field: str
) -> None:
    """DLV-12."""
    with pytest.raises(ValidationError) as info:
        parse_resource(_broker_with(delivery))
    assert any(f"spec.delivery.{field}" in str(p) for p in info.value.problems), info.value.problems


def test_valid_delivery_specs_are_accepted() -> None:
    delivery = {
        "retry": 0,
        "backoffPolicy": "linear",
        "backoffDelay": "PT2S",
        "timeout": "PT0.5S",
        "retryAfterMax": "PT0S",
        "format": "binary",
    }
    broker = parse_resource(_broker_with(delivery))
    assert isinstance(broker, Broker) and broker.spec.delivery is not None
    assert broker.spec.delivery.backoff_delay == "PT2S" and broker.spec.delivery.retry == 0


def _channel(kind: str, spec: dict[str, object]) -> dict[str, object]:
    version = "messaging.knative.dev/v1beta1" if kind == "KafkaChannel" else "messaging.knative.dev/v1"
    return {"apiVersion": version, "kind": kind, "metadata": {"name": "c", "namespace": "n"}, "spec": spec}


def test_a_channel_declares_its_topic_itself_or_through_its_template() -> None:
    own = parse_resource(_channel("KafkaChannel", {"numPartitions": 6, "retentionDuration": "P7D"}))
    assert isinstance(own, Channel)
    topic = own.spec.topic()
    assert (topic.num_partitions, topic.replication_factor, topic.retention_ms()) == (
        6,
        None,
        7 * 86400 * 1000,
    )
    template = {"apiVersion": "messaging.knative.dev/v1beta1", "kind": "KafkaChannel"}
    templated = parse_resource(
        _channel(
            "Channel", {"channelTemplate": {**template, "spec": {"numPartitions": 2, "replicationFactor": 3}}}
        )
    )
    assert isinstance(templated, Channel)
    assert templated.spec.topic() == TopicSpec(numPartitions=2, replicationFactor=3)
    plain = parse_resource(_channel("Channel", {}))
    assert isinstance(plain, Channel)
    assert plain.spec.topic() == TopicSpec()  # Kanal's settings apply


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"numPartitions": 0}, "spec.numPartitions"),
        ({"replicationFactor": -1}, "spec.replicationFactor"),
        ({"retentionDuration": "a week"}, "not an ISO 8601 duration"),
        ({"retentionDuration": "PT0S"}, "retentionDuration must be greater than zero"),
        (
            {"channelTemplate": {"kind": "KafkaChannel", "spec": {"numPartitions": 0}}},
            "spec.channelTemplate.numPartitions",
        ),
    ],
)
def test_invalid_topic_fields_are_refused_naming_them(spec: dict[str, object], expected: str) -> None:
    kind = "Channel" if "channelTemplate" in spec else "KafkaChannel"
    with pytest.raises(ValidationError, match=expected):
        parse_resource(_channel(kind, spec))
