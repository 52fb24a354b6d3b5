"""What `kanal apply` says about documents before sending them: Kubernetes kinds it skips, and
warnings for what it takes but does not act on: a Broker's spec.config, which points at a
ConfigMap Kanal does not read (Knative's Kafka Broker takes its topic settings from there; Kanal
takes them from its own settings), and a destination's OIDC `audience` (Kanal sends no tokens)."""

from __future__ import annotations

from pathlib import Path

from kanal.cli.manifests import eventing_documents

MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: kafka-broker-config, namespace: knative-eventing}
data: {default.topic.partitions: "10"}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: configured, namespace: shop}
spec:
  config: {apiVersion: v1, kind: ConfigMap, name: kafka-broker-config, namespace: knative-eventing}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: plain, namespace: shop}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: oidc, namespace: shop}
spec:
  broker: plain
  subscriber: {uri: "https://orders.example/", audience: orders}
  delivery: {deadLetterSink: {ref: {apiVersion: v1, kind: Service, name: dls}, audience: dls}}
"""


def test_skipped_kinds_and_an_unread_broker_config_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "brokers.yaml"
    path.write_text(MANIFEST)
    docs, notices = eventing_documents([str(path)], None)
    assert [d["metadata"]["name"] for d in docs] == ["configured", "plain", "oidc"]  # all applied
    lines = [str(n) for n in notices]
    assert lines[0].startswith("skipped ConfigMap kafka-broker-config")
    assert lines[1:] == [
        "Warning: Broker shop/configured: spec.config (ConfigMap knative-eventing kafka-broker-config)"
        " is not read by Kanal; its topic is made with KANAL_KAFKA_TOPIC_PARTITIONS and"
        " KANAL_KAFKA_TOPIC_REPLICATION_FACTOR",
        "Warning: Trigger shop/oidc: spec.subscriber.audience is not used: Kanal sends no OIDC token,"
        " so that destination must take requests without one",
        "Warning: Trigger shop/oidc: spec.delivery.deadLetterSink.audience is not used: Kanal sends no"
        " OIDC token, so that destination must take requests without one",
    ]
