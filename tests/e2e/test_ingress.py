"""The ingress through a real server on loopback and a real Kafka-protocol broker: every status
code, records as the Kafka binding says, and a 202 that survives SIGKILL."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from channel.kafka import broker_topic
from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: ing}
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {name: chan, namespace: ing}
"""
GOOD = {
    "ce-id": "1",
    "ce-specversion": "1.0",
    "ce-type": "t",
    "ce-source": "s",
    "content-type": "application/json",
}


@pytest.fixture
async def cluster(kafka: KafkaUnderTest, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(
        kafka, tmp_path, ingress_max_body_bytes="2000", dispatcher_port="0", log_format="json"
    )
    try:
        await cluster.start("controller", "ingress")
        await cluster.apply(BROKER)
        yield cluster
    finally:
        cluster.stop()


async def read_topic(kafka: KafkaUnderTest, topic: str, expect: int, timeout: float = 20) -> list[object]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    count, _ = await kafka.describe_topic(topic)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[object] = []
        async with asyncio.timeout(timeout):
            while len(records) < expect:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected"),
    [
        pytest.param("POST", "/ing/default", GOOD, b"{}", 202, id="202-binary"),
        pytest.param(
            "POST",
            "/ing/default",
            {"content-type": "application/cloudevents+json"},
            json.dumps({"specversion": "1.0", "id": "2", "source": "s", "type": "t"}).encode(),
            202,
            id="202-structured",
        ),
        pytest.param(
            "POST",
            "/ing/default",
            {"content-type": "application/cloudevents-batch+json"},
            b"[]",
            202,
            id="202-empty-batch",
        ),
        pytest.param("POST", "/channels/ing/chan", GOOD, b"{}", 202, id="202-channel"),
        pytest.param("POST", "/ing/default", {"content-type": "text/plain"}, b"not an event", 400, id="400"),
        pytest.param("POST", "/ing/missing", GOOD, b"{}", 404, id="404"),
        pytest.param("PUT", "/ing/default", GOOD, b"{}", 405, id="405-put"),
        pytest.param("GET", "/ing/default", GOOD, b"", 405, id="405-get"),
        pytest.param("PATCH", "/ing/default", GOOD, b"{}", 405, id="405-patch"),
        pytest.param("DELETE", "/channels/ing/chan", GOOD, b"", 405, id="405-delete-channel"),
        pytest.param("POST", "/channels/ing/missing", GOOD, b"{}", 404, id="404-channel"),
        pytest.param("POST", "/ing/default", GOOD, b"x" * 3000, 413, id="413"),
        pytest.param(
            "POST", "/ing/default", {"content-type": "application/cloudevents+avro"}, b"{}", 415, id="415"
        ),
    ],
)
async def test_status_codes(
    cluster: KanalCluster, method: str, path: str, headers: dict[str, str], body: bytes, expected: int
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, cluster.ingress_url + path, data=body, headers=headers) as response,
    ):
        assert response.status == expected, await response.text()
        if expected >= 400:
            assert response.headers["content-type"].startswith("application/json")
        if expected == 405:
            assert response.headers["allow"] == "POST, OPTIONS"


async def test_the_log_is_json_lines_naming_refused_events_never_their_data(cluster: KanalCluster) -> None:
    secret = b'{"card": "4111 1111 1111 1111"}'
    invalid = {k: v for k, v in GOOD.items() if k != "ce-source"} | {"ce-id": "bad-1"}
    async with aiohttp.ClientSession() as session:
        for headers, expected in ((invalid, 400), (GOOD, 202)):
            url = cluster.broker_url("ing", "default")
            async with session.post(url, data=secret, headers=headers) as response:
                assert response.status == expected
    text = cluster.log_path("ingress").read_text()
    records = [json.loads(line) for line in text.splitlines() if line and not line.startswith("====")]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    refusals = [r["message"] for r in records if "status=400" in r["message"]]
    assert refusals == [refusals[0]] and "event_id='bad-1'" in refusals[0], refusals
    assert "broker ing/default" in refusals[0]
    assert "4111" not in text


async def test_http2_with_prior_knowledge(cluster: KanalCluster, kafka: KafkaUnderTest) -> None:
    """curl speaking HTTP/2 cleartext to the ingress process: 202, and the record in Kafka."""
    event = {**GOOD, "ce-id": "over-h2"}
    headers = [arg for name, value in event.items() for arg in ("-H", f"{name}: {value}")]
    url = cluster.broker_url("ing", "default")
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
        *headers, "--data-binary", '{"h2": true}', url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert out.decode() == "2 202", err.decode()
    topic = broker_topic("ing", "default", cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])
    records = await read_topic(kafka, topic, expect=1)
    stored = [(dict(getattr(r, "headers")).get("ce_id"), getattr(r, "value")) for r in records]  # noqa: B009
    assert (b"over-h2", b'{"h2": true}') in stored


async def test_an_event_without_data_is_a_null_record_in_a_topic_never_compacted(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    """KAF-03: no body and no Content-Type is an event without data, stored as a record with a
    null value (not b""), which compaction would take for a tombstone: so the Broker's topic is
    created with cleanup.policy=delete."""
    headers = {k: v for k, v in GOOD.items() if k != "content-type"} | {"ce-id": "no-data"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            cluster.broker_url("ing", "default"),
            data=b"",
            headers=headers,
            skip_auto_headers=["Content-Type"],
        ) as response,
    ):
        assert response.status == 202
    topic = broker_topic("ing", "default", cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])
    [record] = await read_topic(kafka, topic, 1)
    assert record.value is None  # type: ignore[attr-defined]
    assert "content-type" not in dict(record.headers)  # type: ignore[attr-defined]
    _, configs = await kafka.describe_topic(topic)
    assert configs["cleanup.policy"] == "delete"


async def test_the_topic_takes_every_event_the_ingress_accepts(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    """Kafka's default max.message.bytes (1 MiB) would refuse an event at the ingress's default
    body limit (1 MiB) once its attributes are added: a 413 for an event the ingress said it
    takes. The Broker's topic is created to take twice the body limit (at least 1 MiB), as the
    producer's max_request_size is."""
    topic = broker_topic("ing", "default", cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])
    _, configs = await kafka.describe_topic(topic)
    body_limit = int(cluster.env["KANAL_INGRESS_MAX_BODY_BYTES"])
    assert int(configs["max.message.bytes"]) == max(2 * body_limit, 1024 * 1024)


async def test_record_is_the_kafka_binding_and_a_202_survives_sigkill(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    url = cluster.broker_url("ing", "default")
    accepted: list[str] = []
    async with aiohttp.ClientSession() as session:

        async def send(i: int) -> None:
            headers = {
                **GOOD,
                "ce-id": f"k{i}",
                "ce-subject": "Euro%20%E2%82%AC",
                "ce-partitionkey": f"key{i % 7}",
            }
            async with session.post(url, data=b'{"i":%d}' % i, headers=headers) as response:
                if response.status == 202:
                    accepted.append(f"k{i}")

        await asyncio.gather(*(send(i) for i in range(200)))
    cluster.kill("ingress", signal.SIGKILL)  # right after the last 202
    assert len(accepted) == 200
    topic = broker_topic("ing", "default", cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])
    records = await read_topic(kafka, topic, 200)
    by_id = {dict(r.headers)["ce_id"].decode(): r for r in records}  # type: ignore[attr-defined]
    assert set(accepted) <= set(by_id)
    record = by_id["k3"]
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert headers["ce_subject"] == "Euro €".encode()  # decoded, not percent-encoded
    assert headers["content-type"] == b"application/json"
    assert record.key == b"key3" and headers["ce_partitionkey"] == b"key3"  # type: ignore[attr-defined]
    assert record.value == b'{"i":3}'  # type: ignore[attr-defined]
    assert "ce_time" not in headers


async def test_graceful_shutdown_loses_no_acknowledged_event(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    """SIGTERM under load: the ingress stops accepting, finishes what it took, flushes, and exits 0;
    every 202 it gave is in Kafka."""
    url = cluster.broker_url("ing", "default")
    accepted: list[str] = []
    refused = 0

    async with aiohttp.ClientSession() as session:

        async def send(i: int) -> None:
            nonlocal refused
            try:
                async with session.post(url, data=b"{}", headers={**GOOD, "ce-id": f"g{i}"}) as response:
                    if response.status == 202:
                        accepted.append(f"g{i}")
                    else:
                        refused += 1
            except aiohttp.ClientError:
                refused += 1

        tasks = [asyncio.create_task(send(i)) for i in range(400)]
        # SIGTERM once the load is flowing (the first answers are in), not after a fixed delay:
        # on a slow machine no connection may be up after 50 ms, and then nothing is tested.
        async with asyncio.timeout(20):
            while not accepted and not all(task.done() for task in tasks):
                await asyncio.sleep(0.005)
        cluster.processes["ingress"].send_signal(signal.SIGTERM)
        await asyncio.gather(*tasks)
    code = cluster.processes["ingress"].wait(30)
    assert code == 0, cluster.tail("ingress")
    assert accepted, "nothing was accepted before the SIGTERM"
    topic = broker_topic("ing", "default", cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])
    records = await read_topic(kafka, topic, len(accepted))
    stored = {dict(r.headers)["ce_id"].decode() for r in records}  # type: ignore[attr-defined]
    assert set(accepted) <= stored
    print(f"\nSIGTERM under load: {len(accepted)} accepted and stored, {refused} refused")
