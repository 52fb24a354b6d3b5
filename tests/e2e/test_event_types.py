"""Event discovery end to end, with real processes: the ingress records the kinds of events a
Broker carries, `kanal get eventtypes` and `kanal describe eventtype` show exactly them with
their counts, a restarted ingress loses none and counts on, a cap of 2 records 2 (and the
ingress's metrics say so) while every event is still delivered, and deleting the Broker takes
its EventTypes with it.

The counts reach Kafka every few seconds, so the tests wait for a condition (`_until`), never for
a time; each test has a namespace of its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from channel.resources.eventtype import eventtypes_topic
from channel.settings import Settings
from channel.topics import TopicRange
from support.cluster import KanalCluster
from support.events import post_batch, post_event
from support.kafka import KafkaUnderTest
from support.polling import until
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

ORDER, REFUND, AUDIT = "com.example.order", "com.example.refund", "com.example.audit"
SCHEMA = "https://example.com/schemas/audit.json"


def _namespace() -> str:
    return f"et{uuid.uuid4().hex[:8]}"


def _broker(ns: str) -> str:
    return (
        f"apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: {ns}}}\n"
    )


def _trigger(ns: str, url: str) -> str:
    return (
        "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: all, namespace: {ns}}}\n"
        f"spec:\n  broker: default\n  subscriber: {{uri: '{url}'}}\n"
    )


def _eventtypes(cluster: KanalCluster, ns: str) -> list[dict[str, Any]]:
    result = cluster.kanal("get", "eventtypes", "-n", ns, "-o", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    return list(doc["items"]) if doc.get("kind") == "List" else [doc]


def _counts(docs: list[dict[str, Any]]) -> dict[str, int]:
    out = {}
    for doc in docs:
        attributes = {a["name"]: a["value"] for a in doc["spec"]["attributes"]}
        out[attributes["type"]] = doc["status"]["count"]
    return out


async def _counted(
    cluster: KanalCluster, ns: str, expected: dict[str, int], broker: str | None = None
) -> list[dict[str, Any]]:
    """Wait until the EventTypes of `ns` (of `broker` alone, if given) have the `expected`
    counts by type."""

    def check() -> tuple[bool, str]:
        docs = _eventtypes(cluster, ns)
        if broker is not None:
            docs = [d for d in docs if d["spec"]["reference"]["name"] == broker]
        return _counts(docs) == expected, json.dumps(docs)

    return list(json.loads(await until(check, f"event types {expected}")))


def _metric(cluster: KanalCluster, name: str, ns: str) -> float:
    url = f"http://127.0.0.1:{cluster.metrics_port('ingress')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    wanted = f'{name}{{kind="Broker",name="default",namespace="{ns}"}} '
    found = [line for line in text.splitlines() if line.startswith(wanted)]
    return float(found[0].split()[-1]) if found else 0.0


@pytest.mark.timeout(300)
async def test_event_types_are_listed_described_kept_across_restarts_and_deleted(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    ns = _namespace()
    await cluster.apply(_broker(ns))
    url = cluster.broker_url(ns, "default")
    json_type = {"datacontenttype": "application/json"}  # as the binary-mode events below have
    await post_batch(url, [("o1", ORDER), ("o2", ORDER), ("r1", REFUND)], "/shop", **json_type)
    await post_event(url, "o3", ORDER, "/shop", b'{"total": 12}')
    await post_event(url, "r2", REFUND, "/shop")
    await post_event(url, "a1", AUDIT, "/log", b"<secret-payload/>", **{
        "content-type": "application/xml", "ce-dataschema": SCHEMA,
    })  # fmt: skip
    docs = await _counted(cluster, ns, {ORDER: 3, REFUND: 2, AUDIT: 1})

    # Exactly them: Knative's shape, valid names, the Broker referenced.
    assert len({d["metadata"]["name"] for d in docs}) == 3
    for doc in docs:
        assert doc["apiVersion"] == "eventing.knative.dev/v1beta3" and doc["kind"] == "EventType"
        assert doc["metadata"]["namespace"] == ns and doc["metadata"]["name"].startswith("et-default-")
        assert doc["spec"]["reference"] == {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "name": "default",
        }
        assert doc["status"]["replicas"] == 1
    audit = next(d for d in docs if _counts([d]) == {AUDIT: 1})
    assert {a["name"]: a["value"] for a in audit["spec"]["attributes"]} == {
        "type": AUDIT,
        "source": "/log",
        "dataschema": SCHEMA,
        "datacontenttype": "application/xml",
    }

    # The table, and describe: the example's attributes, its data only when asked for.
    table = cluster.kanal("get", "eventtypes", "-n", ns)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "TYPE", "SOURCE", "REFERENCE", "COUNT"]
    assert sorted((r.split()[1], r.split()[4]) for r in rows) == [(AUDIT, "1"), (ORDER, "3"), (REFUND, "2")]
    name = audit["metadata"]["name"]
    described = cluster.kanal("describe", "eventtype", name, "-n", ns)
    assert described.returncode == 0, described.stderr
    assert f"Name:          {name}" in described.stdout
    assert "  Count:       1" in described.stdout
    assert re.search(r"^  id +a1$", described.stdout, re.MULTILINE), described.stdout
    assert "secret-payload" not in described.stdout
    with_data = cluster.kanal("describe", "eventtype", name, "-n", ns, "--show-data")
    assert with_data.returncode == 0, with_data.stderr
    assert "<secret-payload/>" in with_data.stdout
    missing = cluster.kanal("describe", "eventtype", "et-nothing", "-n", ns)
    assert missing.returncode == 1 and 'EventType "et-nothing" not found' in missing.stderr

    # Killed (no last write) and started again: what it had written stays, and it counts on
    # under the same replica's records rather than beside them.
    cluster.kill("ingress", signal.SIGKILL)
    await cluster.start("ingress")
    await post_event(url, "o4", ORDER, "/shop")
    docs = await _counted(cluster, ns, {ORDER: 4, REFUND: 2, AUDIT: 1})
    assert all(d["status"]["replicas"] == 1 for d in docs)
    # Stopped gracefully right after an event: its last write has it.
    await post_event(url, "r3", REFUND, "/shop")
    cluster.kill("ingress", signal.SIGTERM)
    await cluster.start("ingress")
    await _counted(cluster, ns, {ORDER: 4, REFUND: 3, AUDIT: 1})

    # A Broker deleted while no ingress runs: its records are removed when one starts.
    await cluster.apply(_broker(ns).replace("default", "other"))
    await post_event(cluster.broker_url(ns, "other"), "x1", ORDER, "/other")
    await _counted(cluster, ns, {ORDER: 1}, broker="other")
    cluster.kill("ingress", signal.SIGTERM)
    assert cluster.kanal("delete", "broker", "other", "-n", ns).returncode == 0
    await cluster.start("ingress")
    await until(_removed(kafka, cluster, f"Broker/{ns}/other/", 1), "the deleted Broker's records removed")

    # Deleting the Broker with the ingress running takes its EventTypes: tombstones for all of
    # them, and a new Broker of that name starts with none.
    deleted = cluster.kanal("delete", "broker", "default", "-n", ns)
    assert deleted.returncode == 0, deleted.stderr
    await until(_removed(kafka, cluster, f"Broker/{ns}/default/", 3), "the Broker's records removed")
    await cluster.apply(_broker(ns))
    gone = cluster.kanal("get", "eventtypes", "-n", ns)
    assert gone.returncode == 0 and gone.stdout == "", gone.stdout
    await post_event(cluster.broker_url(ns, "default"), "n1", ORDER, "/new")
    [fresh] = await _counted(cluster, ns, {ORDER: 1})
    assert {a["name"]: a["value"] for a in fresh["spec"]["attributes"]}["source"] == "/new"


def _removed(
    kafka: KafkaUnderTest, cluster: KanalCluster, prefix: str, kinds: int
) -> Callable[[], tuple[bool, str]]:
    """A check: the EventType topic has `kinds` keys under `prefix`, each ending in a tombstone."""
    settings = kafka.settings(kafka_resources_topic=cluster.env["KANAL_KAFKA_RESOURCES_TOPIC"])

    def check() -> tuple[bool, str]:
        latest = asyncio.run(_latest(settings))
        mine = {key: value for key, value in latest.items() if key.startswith(prefix)}
        return len(mine) == kinds and all(v is None for v in mine.values()), repr(mine)

    return check


async def _latest(settings: Settings) -> dict[str, bytes | None]:
    latest: dict[str, bytes | None] = {}
    async for record in TopicRange(settings, eventtypes_topic(settings.kafka_resources_topic)).records():
        latest[(record.key or b"").decode()] = record.value
    return latest


@pytest.mark.timeout(240)
@pytest.mark.parametrize("cluster_settings", [{"ingress_event_types_max": "2"}])
async def test_a_cap_of_two_records_two_and_delivers_every_event(cluster: KanalCluster) -> None:
    ns = _namespace()
    sink = await RecordingSink().start()
    try:
        await cluster.apply(_broker(ns) + _trigger(ns, sink.url))
        url = cluster.broker_url(ns, "default")
        # One request, so the third kind is counted (or not) in the same write as the first two.
        await post_batch(url, [("o1", ORDER), ("r1", REFUND), ("a1", AUDIT), ("o2", ORDER)], "/shop")
        received = await sink.wait_for(4)
        assert sorted(r.header("ce-id") or "" for r in received) == ["a1", "o1", "o2", "r1"]
        await _counted(cluster, ns, {ORDER: 2, REFUND: 1})
        assert _metric(cluster, "kanal_ingress_event_types_at_cap", ns) == 1.0
        assert _metric(cluster, "kanal_ingress_event_types_unrecorded_events_total", ns) == 1.0
    finally:
        await sink.close()


@pytest.mark.timeout(240)
async def test_two_ingress_replicas_are_summed(cluster: KanalCluster) -> None:
    ns = _namespace()
    await cluster.apply(_broker(ns))
    await cluster.start("ingress-2")
    second = f"http://127.0.0.1:{cluster.ports['ingress-2']}/{ns}/default"
    await post_batch(cluster.broker_url(ns, "default"), [("a1", ORDER), ("a2", ORDER)], "/shop")
    await post_batch(second, [("b1", ORDER), ("b2", ORDER), ("b3", ORDER), ("b4", REFUND)], "/shop")
    docs = await _counted(cluster, ns, {ORDER: 5, REFUND: 1})
    replicas = {_counts([d]).popitem()[0]: d["status"]["replicas"] for d in docs}
    assert replicas == {ORDER: 2, REFUND: 1}
