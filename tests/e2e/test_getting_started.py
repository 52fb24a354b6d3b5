"""Knative's getting-started walk-through, end to end, through real Kanal processes.

Broker `default` in `event-example`, Triggers `hello-display` (type greeting) and
`goodbye-display` (source sendoff), the tutorial's three events in binary mode: each 202, and
each sink receives exactly the events its Trigger selects, once, with attributes and data bytes
as sent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "getting-started"

EVENTS = [
    ("say-hello", "greeting", "not-sendoff", b'{"msg":"Hello Knative!"}'),
    ("say-goodbye", "not-greeting", "sendoff", b'{"msg":"Goodbye Knative!"}'),
    ("say-hello-goodbye", "greeting", "sendoff", b'{"msg":"Hello Knative! Goodbye Knative!"}'),
]


@pytest.fixture
async def cluster(kafka: KafkaUnderTest, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(kafka, tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[RecordingSink, RecordingSink]]:
    hello, goodbye = await RecordingSink().start(), await RecordingSink().start()
    yield hello, goodbye
    await hello.close()
    await goodbye.close()


def _manifests(hello: RecordingSink, goodbye: RecordingSink) -> str:
    text = (EXAMPLES / "01-broker.yaml").read_text() + "\n---\n" + (EXAMPLES / "02-triggers.yaml").read_text()
    return text.replace("http://127.0.0.1:9001/", hello.url).replace("http://127.0.0.1:9002/", goodbye.url)


@pytest.mark.kafka_compat
async def test_getting_started_flow(
    cluster: KanalCluster, sinks: tuple[RecordingSink, RecordingSink]
) -> None:
    hello, goodbye = sinks
    applied = await cluster.apply(_manifests(hello, goodbye))
    assert "broker.eventing.knative.dev/default created" in applied.stdout
    assert "trigger.eventing.knative.dev/hello-display created" in applied.stdout
    assert "skipped Namespace event-example" in applied.stderr

    brokers = cluster.kanal("get", "brokers", "-n", "event-example")
    assert brokers.returncode == 0, brokers.stderr
    header, row = brokers.stdout.splitlines()
    assert header.split() == ["NAME", "URL", "AGE", "READY", "REASON"]
    url = cluster.broker_url("event-example", "default")
    assert row.split()[:2] == ["default", url] and row.split()[3] == "True"

    triggers = cluster.kanal("get", "triggers", "-n", "event-example")
    lines = triggers.stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "REASON", "BROKER", "SUBSCRIBER_URI", "LAG", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["hello-display"][1:4] == ["True", "default", hello.url]
    assert rows["goodbye-display"][1:4] == ["True", "default", goodbye.url]

    as_json = json.loads(
        cluster.kanal("get", "broker", "default", "-n", "event-example", "-o", "json").stdout
    )
    assert as_json["status"]["address"]["url"] == url

    async with aiohttp.ClientSession() as session:
        for event_id, event_type, source, body in EVENTS:
            headers = {
                "Ce-Id": event_id,
                "Ce-Specversion": "1.0",
                "Ce-Type": event_type,
                "Ce-Source": source,
                "Content-Type": "application/json",
            }
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 202, await response.text()

    await hello.wait_for(2)
    await goodbye.wait_for(2)
    await asyncio.sleep(1.0)  # anything extra (a duplicate, a wrong route) would arrive by now
    assert sorted(hello.ids()) == ["say-hello", "say-hello-goodbye"]
    assert sorted(goodbye.ids()) == ["say-goodbye", "say-hello-goodbye"]

    sent = {event_id: (event_type, source, body) for event_id, event_type, source, body in EVENTS}
    for request in [*hello.requests, *goodbye.requests]:
        event_type, source, body = sent[request.header("ce-id") or ""]
        assert request.method == "POST"
        assert request.body == body
        assert request.header("ce-type") == event_type
        assert request.header("ce-source") == source
        assert request.header("ce-specversion") == "1.0"
        assert request.header("content-type") == "application/json"
        assert request.header("ce-time") is None  # nothing invented on the way
        assert request.header("prefer") == "reply"


async def test_status_codes(cluster: KanalCluster, sinks: tuple[RecordingSink, RecordingSink]) -> None:
    hello, goodbye = sinks
    await cluster.apply(_manifests(hello, goodbye))
    url = cluster.broker_url("event-example", "default")
    good = {
        "Ce-Id": "1",
        "Ce-Specversion": "1.0",
        "Ce-Type": "t",
        "Ce-Source": "s",
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=b"this is not a cloud event", headers={"Content-Type": "text/plain"}
        ) as response:
            assert response.status == 400
            assert "id" in await response.text()
        async with session.post(
            cluster.broker_url("event-example", "nope"), data=b"{}", headers=good
        ) as response:
            assert response.status == 404
        async with session.get(url, headers=good) as response:
            assert response.status == 405
            assert "POST" in response.headers["Allow"]
        async with session.get(f"{cluster.ingress_url}/readyz") as response:
            assert response.status == 200


async def test_delete_broker_stops_route(
    cluster: KanalCluster, sinks: tuple[RecordingSink, RecordingSink]
) -> None:
    hello, goodbye = sinks
    await cluster.apply(_manifests(hello, goodbye))
    deleted = cluster.kanal("delete", "broker", "default", "-n", "event-example")
    assert deleted.returncode == 0, deleted.stderr
    triggers = cluster.kanal("get", "triggers", "-n", "event-example")
    assert "BrokerDoesNotExist" in triggers.stdout
    url = cluster.broker_url("event-example", "default")
    headers = {"Ce-Id": "x", "Ce-Specversion": "1.0", "Ce-Type": "greeting", "Ce-Source": "s"}
    async with aiohttp.ClientSession() as session:
        for _ in range(40):  # the ingress follows the resource log within 2 s
            async with session.post(url, data=b"", headers=headers) as response:
                if response.status == 404:
                    break
            await asyncio.sleep(0.1)
        assert response.status == 404
