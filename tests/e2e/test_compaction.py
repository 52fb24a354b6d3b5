"""The resource log is a real compacted topic: after Apache Kafka's log cleaner has run over it,
restarting every Kanal process rebuilds exactly the same resources, and deleted ones stay
deleted once their tombstones are gone too.

Apache Kafka alone: the embedded broker does not compact. The test runs a broker of its own
whose cleaner looks for work every 100 ms, and makes the resources topic before Kanal starts,
with segments that roll every 200 ms and any dirty share worth cleaning, so compaction happens
within seconds instead of days.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from channel.kafka import create_admin, ensure_topic
from support.apache_kafka import ApacheKafka, missing_tools
from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest, apache_under_test

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

COMPACT_NOW = {
    "cleanup.policy": "compact",
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "500",
}


@pytest.fixture
def compacting_kafka(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KafkaUnderTest]:
    chosen = {name.strip() for name in request.config.getoption("--kafka-backends").split(",")}
    if "apache" not in chosen:
        pytest.skip("starts an Apache Kafka of its own: runs with --kafka-backends apache")
    if missing := missing_tools():
        pytest.skip(f"Apache Kafka needs {' and '.join(missing)}")  # conftest says so loudly too
    with ApacheKafka(workdir=tmp_path / "kafka", properties={"log.cleaner.backoff.ms": "100"}) as broker:
        yield apache_under_test(broker.bootstrap_servers)


@pytest.fixture
async def compacted_cluster(compacting_kafka: KafkaUnderTest, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(compacting_kafka, tmp_path)
    settings = compacting_kafka.settings()
    admin = create_admin(settings)
    await admin.start()
    try:
        topic = cluster.env["KANAL_KAFKA_RESOURCES_TOPIC"]
        await ensure_topic(admin, topic, partitions=1, replication_factor=1, config=COMPACT_NOW)
    finally:
        await admin.close()
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _trigger(name: str, kind: str) -> str:
    return f"""
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: c}}
spec:
  broker: default
  filter: {{attributes: {{type: {kind}}}}}
  subscriber: {{uri: "http://127.0.0.1:9/{name}"}}
"""


BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: c}
"""


async def _log(kafka: KafkaUnderTest, topic: str) -> tuple[list[tuple[int, str, bool]], int]:
    """The topic's records as (offset, key, is a tombstone), and its end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[tuple[int, str, bool]] = []
        async with asyncio.timeout(20):
            while await consumer.position(tp) < end:
                for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                    records += [(r.offset, (r.key or b"").decode(), r.value is None) for r in batch]
        return records, end
    finally:
        await consumer.stop()


def _resources(cluster: KanalCluster) -> dict[str, Any]:
    """Every resource as `kanal get` shows it: kind/name -> (uid, spec)."""
    found = {}
    for kind in ("brokers", "triggers"):
        result = cluster.kanal("get", kind, "-n", "c", "-o", "json")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        for item in document.get("items", [document] if "metadata" in document else []):
            found[f"{item['kind']}/{item['metadata']['name']}"] = (item["metadata"]["uid"], item["spec"])
    return found


async def test_resources_survive_compaction_and_a_restart_of_everything(
    compacted_cluster: KanalCluster, compacting_kafka: KafkaUnderTest
) -> None:
    cluster, topic = compacted_cluster, compacted_cluster.env["KANAL_KAFKA_RESOURCES_TOPIC"]
    await cluster.apply(BROKER + "---" + "---".join(_trigger(f"t{i}", "a") for i in range(6)))
    for version in ("b", "c", "d"):  # three updates of t0 and t1: their older records are garbage
        await cluster.apply(_trigger("t0", version) + "---" + _trigger("t1", version))
    for name in ("t2", "t3"):
        result = await asyncio.to_thread(cluster.kanal, "delete", "trigger", name, "-n", "c")
        assert result.returncode == 0, result.stderr
    expected = _resources(cluster)
    assert set(expected) == {"Broker/default", "Trigger/t0", "Trigger/t1", "Trigger/t4", "Trigger/t5"}
    assert expected["Trigger/t0"][1]["filter"] == {"attributes": {"type": "d"}}

    # The active segment is never cleaned: keep writing (a resource of its own, re-applied) so
    # segments roll, until the cleaner has removed superseded records and then the tombstones.
    deleted = {"Trigger/c/t2", "Trigger/c/t3"}
    async with asyncio.timeout(60):
        for turn in range(10_000):
            await cluster.apply(_trigger("roll", f"r{turn}"))
            records, end = await _log(compacting_kafka, topic)
            keys = [key for _, key, _ in records]
            superseded_gone = keys.count("Trigger/c/t0") <= 1 and keys.count("Trigger/c/t1") <= 1
            if superseded_gone and not deleted & set(keys):
                break
            await asyncio.sleep(0.3)
    assert len(records) < end, "the cleaner left no gap: nothing was compacted"
    print(f"COMPACTION {end} records written, {len(records)} left after the log cleaner ran")

    await asyncio.to_thread(cluster.kanal, "delete", "trigger", "roll", "-n", "c")
    cluster.stop()
    await cluster.start()
    assert _resources(cluster) == expected
