"""Updates through `kanal apply` against a running controller: the fields Knative makes immutable
are refused with a message naming them and the stored resource is unchanged (FLT-05, SUB-05,
SUB-11); the others are taken in place (a Trigger's subscriber and filter)."""

from __future__ import annotations

import asyncio
import json

import pytest

from channel.kafka import channel_topic
from channel.settings import Settings
from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def _manifest(api_version: str, kind: str, name: str, spec: str) -> str:
    return f"""
apiVersion: {api_version}
kind: {kind}
metadata: {{name: {name}, namespace: up}}
spec:
{spec}"""


def _trigger(broker: str, subscriber: str, event_type: str) -> str:
    spec = f"""  broker: {broker}
  filter: {{attributes: {{type: {event_type}}}}}
  subscriber: {{uri: "{subscriber}"}}
"""
    return _manifest("eventing.knative.dev/v1", "Trigger", "t", spec)


def _subscription(channel: str) -> str:
    spec = f"""  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: {channel}}}
  subscriber: {{uri: "http://127.0.0.1:9/"}}
"""
    return _manifest("messaging.knative.dev/v1", "Subscription", "s", spec)


def _channel(template_kind: str) -> str:
    spec = f"  channelTemplate: {{apiVersion: messaging.knative.dev/v1beta1, kind: {template_kind}}}\n"
    return _manifest("messaging.knative.dev/v1", "Channel", "c", spec)


async def _refused(cluster: KanalCluster, manifest: str) -> str:
    result = await asyncio.to_thread(cluster.kanal, "apply", "-f", "-", stdin=manifest)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    return result.stderr


def _get(cluster: KanalCluster, kind: str, name: str) -> dict:
    return json.loads(cluster.kanal("get", kind, name, "-n", "up", "-o", "json").stdout)


async def test_immutable_fields_are_refused_and_the_rest_updated_in_place(cluster: KanalCluster) -> None:
    await cluster.apply(
        _trigger("one", "http://127.0.0.1:9/a", "x")
        + "---"
        + _subscription("first")
        + "---"
        + _channel("KafkaChannel")
    )
    uid = _get(cluster, "trigger", "t")["metadata"]["uid"]

    assert "spec.broker is immutable" in await _refused(cluster, _trigger("two", "http://127.0.0.1:9/a", "x"))
    assert "spec.channel is immutable" in await _refused(cluster, _subscription("second"))
    assert "spec.channelTemplate is immutable" in await _refused(cluster, _channel("InMemoryChannel"))
    assert _get(cluster, "trigger", "t")["spec"]["broker"] == "one"
    assert _get(cluster, "subscription", "s")["spec"]["channel"]["name"] == "first"
    assert _get(cluster, "channel", "c")["spec"]["channelTemplate"]["kind"] == "KafkaChannel"

    # Subscriber and filter change in place: same resource (uid), new spec, a new generation.
    await cluster.apply(_trigger("one", "http://127.0.0.1:9/b", "y"))
    trigger = _get(cluster, "trigger", "t")
    assert trigger["metadata"]["uid"] == uid and trigger["metadata"]["generation"] == 2
    assert trigger["spec"]["subscriber"]["uri"] == "http://127.0.0.1:9/b"
    assert trigger["spec"]["filter"]["attributes"] == {"type": "y"}


async def test_a_kafka_channel_makes_its_topic_as_declared_and_keeps_it(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    """KafkaChannel's numPartitions, replicationFactor and retentionDuration (or the same in a
    Channel's channelTemplate.spec) make its topic; changing them later is refused, since the
    topic would not follow."""
    kafka_channel = _manifest(
        "messaging.knative.dev/v1beta1",
        "KafkaChannel",
        "k",
        "  numPartitions: 4\n  replicationFactor: 1\n  retentionDuration: PT2H\n",
    )
    templated = _manifest(
        "messaging.knative.dev/v1",
        "Channel",
        "templated",
        "  channelTemplate:\n    apiVersion: messaging.knative.dev/v1beta1\n    kind: KafkaChannel\n"
        "    spec: {numPartitions: 2}\n",
    )
    await cluster.apply(kafka_channel + "---" + templated)
    prefix = cluster.env.get("KANAL_KAFKA_CHANNEL_TOPIC_PREFIX", Settings().kafka_channel_topic_prefix)
    partitions, configs = await kafka.describe_topic(channel_topic("up", "k", prefix))
    assert partitions == 4
    assert configs["retention.ms"] == str(2 * 3600 * 1000)
    partitions, _ = await kafka.describe_topic(channel_topic("up", "templated", prefix))
    assert partitions == 2

    changed = kafka_channel.replace("numPartitions: 4", "numPartitions: 8")
    assert "spec.numPartitions" in await _refused(cluster, changed)
    assert _get(cluster, "kafkachannel", "k")["spec"]["numPartitions"] == 4
    assert "retentionDuration" in await _refused(cluster, kafka_channel.replace("PT2H", "PT0S"))
