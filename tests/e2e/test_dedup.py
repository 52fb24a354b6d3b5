"""Duplicate-free ingestion end to end, with real processes: two ingress replicas in front of one
Broker with `kanal.dev/deduplication-window`, A with the default staleness bound and B strict
(`ingress_deduplication_max_staleness` 0); an event sent to A and at once again to B is stored
once, as is one sent to B and again to A once the bound has passed (a sender's retry), also
after each replica is killed (SIGKILL) or stopped (SIGTERM) and started again; the same id
from another source is stored; a batch stores only its new events; a Broker with a 3-second
window stores the event again after the window; a Broker without the annotation stores every
copy. What the topics hold is read from Kafka itself once a sentinel, sent after everything
else to each Broker, was answered 202: every earlier 202'd write lies before it.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter

import aiohttp
import pytest

from channel.kafka import broker_topic
from channel.settings import Settings
from channel.topics import TopicRange
from support.cluster import KanalCluster
from support.events import post_batch, post_event
from support.kafka import KafkaUnderTest

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

TYPE = "com.example.order"
STALENESS = Settings().ingress_deduplication_max_staleness  # replica A's, the default


def _brokers(ns: str) -> str:
    def broker(name: str, window: str | None) -> str:
        annotations = f", annotations: {{kanal.dev/deduplication-window: {window}}}" if window else ""
        return (
            "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\n"
            f"metadata: {{name: {name}, namespace: {ns}{annotations}}}\n"
        )

    return broker("dedup", "PT10M") + broker("short", "PT3S") + broker("plain", None)


async def _copies(
    cluster: KanalCluster, kafka: KafkaUnderTest, ns: str, name: str
) -> Counter[tuple[str, str]]:
    """(source, id) -> records in the Broker's topic, read from the beginning to its end; the
    sentinel must be among them."""
    settings = kafka.settings(kafka_topic_prefix=cluster.env["KANAL_KAFKA_TOPIC_PREFIX"])
    found: Counter[tuple[str, str]] = Counter()
    async for record in TopicRange(settings, broker_topic(ns, name, settings.kafka_topic_prefix)).records():
        headers = dict(record.headers)
        found[(headers["ce_source"].decode(), headers["ce_id"].decode())] += 1
    assert found[("/sentinel", "sentinel")] == 1, found
    return found


def _metric(cluster: KanalCluster, replica: str, name: str, ns: str, broker: str) -> float:
    return cluster.metric(f'{name}{{kind="broker",name="{broker}",namespace="{ns}"}}', replica)


@pytest.mark.timeout(120)
async def test_duplicates_are_stored_once_across_replicas_restarts_and_windows(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    ns = f"dd{uuid.uuid4().hex[:8]}"
    await cluster.start("ingress-2", ingress_deduplication_max_staleness="0")
    await cluster.apply(_brokers(ns))
    a = f"http://127.0.0.1:{cluster.ports['ingress']}/{ns}"
    b = f"http://127.0.0.1:{cluster.ports['ingress-2']}/{ns}"

    # The short window first: its second copy after the window is sent at the end.
    await post_event(f"{a}/short", "s1", TYPE, "/shop")
    short_stored = time.monotonic()
    await post_event(f"{b}/short", "s1", TYPE, "/shop")  # within the window: not stored

    # To A, then the same event to B: one copy. The same id from another source is another event.
    await post_event(f"{a}/dedup", "e1", TYPE, "/shop")
    await post_event(f"{b}/dedup", "e1", TYPE, "/shop")
    await post_event(f"{b}/dedup", "e1", TYPE, "/other-shop")
    # To B, then to A (default bound, 0.25 s) as a sender retrying after a timeout would: one copy.
    await post_event(f"{b}/dedup", "e4", TYPE, "/shop")
    await asyncio.sleep(STALENESS * 2)  # the documented bound, not a wait for something to happen
    await post_event(f"{a}/dedup", "e4", TYPE, "/shop")
    # A batch: e1 is a duplicate, e2 new and twice in it, e3 new.
    await post_batch(f"{a}/dedup", [("e1", TYPE), ("e2", TYPE), ("e2", TYPE), ("e3", TYPE)], "/shop")
    assert _metric(cluster, "ingress", "kanal_ingress_deduplicated_events_total", ns, "dedup") == 3
    assert _metric(cluster, "ingress-2", "kanal_ingress_deduplicated_events_total", ns, "dedup") == 1
    # B is strict: each of its new events (e1 from /other-shop, e4) waited for a round of its own.
    rounds = cluster.metric("kanal_ingress_deduplication_round_duration_seconds_count", "ingress-2")
    assert rounds >= 2

    # Without the annotation, every copy is stored.
    for url in (a, b, a):
        await post_event(f"{url}/plain", "p1", TYPE, "/shop")

    # Killed and started again, each replica reads the window back from the topic.
    cluster.kill("ingress", signal.SIGKILL)
    await cluster.start("ingress")
    await post_event(f"{a}/dedup", "e1", TYPE, "/shop")
    await post_event(f"{a}/dedup", "e3", TYPE, "/shop")
    cluster.kill("ingress-2", signal.SIGTERM)
    await cluster.start("ingress-2")
    await post_event(f"{b}/dedup", "e2", TYPE, "/shop")
    await post_event(f"{b}/dedup", "e1", TYPE, "/other-shop")
    assert _metric(cluster, "ingress-2", "kanal_ingress_deduplication_ids", ns, "dedup") >= 0

    # After the short window, the same event is stored again.
    await asyncio.sleep(max(0.0, short_stored + 3.5 - time.monotonic()))
    await post_event(f"{a}/short", "s1", TYPE, "/shop")

    for name in ("dedup", "short", "plain"):
        await post_event(f"{a}/{name}", "sentinel", TYPE, "/sentinel")
    dedup, short, plain = [await _copies(cluster, kafka, ns, name) for name in ("dedup", "short", "plain")]
    assert dedup == {
        ("/shop", "e1"): 1,
        ("/other-shop", "e1"): 1,
        ("/shop", "e2"): 1,
        ("/shop", "e3"): 1,
        ("/shop", "e4"): 1,
        ("/sentinel", "sentinel"): 1,
    }
    assert short == {("/shop", "s1"): 2, ("/sentinel", "sentinel"): 1}
    assert plain == {("/shop", "p1"): 3, ("/sentinel", "sentinel"): 1}


@pytest.mark.timeout(60)
async def test_concurrent_copies_at_one_replica_are_stored_once_and_bad_windows_are_refused(
    cluster: KanalCluster, kafka: KafkaUnderTest
) -> None:
    ns = f"dd{uuid.uuid4().hex[:8]}"
    invalid = _brokers(ns).replace("PT10M", "10m")
    result = await asyncio.to_thread(cluster.kanal, "apply", "-f", "-", stdin=invalid)
    assert result.returncode != 0
    assert "kanal.dev/deduplication-window" in result.stderr and "'10m'" in result.stderr, result.stderr
    await cluster.apply(_brokers(ns))
    url = f"{cluster.ingress_url}/{ns}/dedup"
    headers = {"ce-id": "c1", "ce-specversion": "1.0", "ce-type": TYPE, "ce-source": "/shop"}
    async with aiohttp.ClientSession() as session:

        async def send() -> int:
            async with session.post(url, data=b"{}", headers=headers) as response:
                return response.status

        assert await asyncio.gather(*(send() for _ in range(20))) == [202] * 20
    await post_event(url, "sentinel", TYPE, "/sentinel")
    assert await _copies(cluster, kafka, ns, "dedup") == {("/shop", "c1"): 1, ("/sentinel", "sentinel"): 1}
