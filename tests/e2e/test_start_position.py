"""A new Trigger gets exactly the events accepted after it was created: none of those the Broker
accepted before, even the ones accepted a few milliseconds before (in the same second as its
`creationTimestamp`, in the same record batch as the last of them), and all of those after, on
every partition; also when the dispatcher was down while it was created, and when its Broker was
deleted and made again (then the whole new topic is after it).

Each round posts events concurrently (so the ingress writes multi-record batches on every
partition), applies a fresh Trigger the moment the last 202 is in, through the admin API the CLI
uses (`kanal apply` would add its start-up time between the two), then posts one sentinel per
partition. The Trigger delivers in order, one event at a time per partition, so once every
sentinel has arrived every earlier event it would (wrongly) have taken has arrived too: what the
sink holds then is all it will ever get of them.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import time

import aiohttp
import pytest
import yaml
from aiokafka.partitioner import DefaultPartitioner

from channel.resources.start import START_OFFSETS, StartPoint
from channel.settings import Settings
from kanal.cli.client import AdminClient
from support.cluster import KanalCluster
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

NAMESPACE = "sp"
EARLIER = 150  # events accepted before each Trigger is created
ROUNDS = 5
# Sender connections: enough that the ingress batches several requests' events per partition.
SENDERS = 16
BROKER = f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: {NAMESPACE}}}
"""


def _trigger(name: str, sink: str) -> dict[str, object]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"kafka.eventing.knative.dev/delivery.order": "ordered"},
        },
        "spec": {"broker": "default", "filter": {"attributes": {"type": "s"}}, "subscriber": {"uri": sink}},
    }


def _key_on(partition: int, partitions: int) -> str:
    """A partitionkey the ingress writes to `partition` (murmur2, as every Kafka client)."""
    choose = DefaultPartitioner()
    every = list(range(partitions))
    return next(f"k{n}" for n in range(10_000) if choose(f"k{n}".encode(), every, every) == partition)


async def _post(session: aiohttp.ClientSession, url: str, event_id: str, key: str) -> int:
    """POST one event of the Triggers' type with partitionkey `key`; its status."""
    headers = {
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-type": "s",
        "ce-source": "start-position-test",
        "ce-partitionkey": key,
        "content-type": "application/json",
    }
    async with session.post(url, data=b"{}", headers=headers) as response:
        return response.status


class _Broker:
    """The test's Broker `default`, and how the test reaches it: the controller's admin API (for
    applying right after a 202) and a partitionkey for each of its topic's partitions."""

    def __init__(self, cluster: KanalCluster) -> None:
        self.admin = AdminClient(f"http://127.0.0.1:{cluster.ports['controller']}", token=cluster.token)
        self.url = cluster.broker_url(NAMESPACE, "default")
        partitions = int(cluster.env.get("KANAL_KAFKA_TOPIC_PARTITIONS", Settings().kafka_topic_partitions))
        self.keys = [_key_on(p, partitions) for p in range(partitions)]

    async def post(self, ids: list[str]) -> None:
        """POST every event, `SENDERS` at a time, spread over the partitions; each must get a 202."""
        connector = aiohttp.TCPConnector(limit=SENDERS)
        async with aiohttp.ClientSession(connector=connector) as session:
            keys = self.keys
            statuses = await asyncio.gather(
                *(_post(session, self.url, i, keys[n % len(keys)]) for n, i in enumerate(ids))
            )
        assert set(statuses) == {202}, statuses

    async def sentinels(self, prefix: str) -> set[str]:
        """POST one sentinel to each partition; their ids."""
        ids = [f"{prefix}sentinel-{p}" for p in range(len(self.keys))]
        await self.post(ids)
        return set(ids)

    async def accepting(self, timeout: float = 30.0) -> None:
        """Wait until an event to every partition is accepted: the ingress's first write to a topic
        made again can be answered 503 (such an event may be stored all the same; ids `ready-*`)."""
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
            for attempt in itertools.count():
                keys = enumerate(self.keys)
                statuses = [await _post(session, self.url, f"ready-{attempt}-{p}", key) for p, key in keys]
                if set(statuses) == {202}:
                    return
                await asyncio.sleep(0.5)

    async def apply_trigger(self, name: str, sink: RecordingSink) -> None:
        await asyncio.to_thread(self.admin.apply, [_trigger(name, sink.url)])


async def _broker(cluster: KanalCluster) -> _Broker:
    await cluster.apply(BROKER)
    return _Broker(cluster)


async def _sentinels_arrive(sink: RecordingSink, sentinels: set[str], timeout: float = 30.0) -> list[str]:
    """Wait until every sentinel arrived; the ids received by then, in order. Fails with the ids
    received if they do not arrive within `timeout`."""
    deadline = time.monotonic() + timeout
    while not sentinels <= set(sink.ids()):
        await sink.wait_for(len(sink.requests) + 1, timeout=max(0.0, deadline - time.monotonic()))
    return [str(i) for i in sink.ids()]


async def test_a_new_trigger_gets_exactly_the_events_accepted_after_it_was_created(
    cluster: KanalCluster,
) -> None:
    broker = await _broker(cluster)
    sinks: list[RecordingSink] = []
    failures: list[str] = []
    try:
        async with asyncio.timeout(20 * ROUNDS):
            for round_ in range(ROUNDS):
                sink = await RecordingSink().start()
                sinks.append(sink)
                await broker.post([f"r{round_}-{n}" for n in range(EARLIER)])
                await broker.apply_trigger(f"late-{round_}", sink)
                sentinels = await broker.sentinels(f"r{round_}-")
                received = await _sentinels_arrive(sink, sentinels)
                if sorted(received) != sorted(sentinels):
                    earlier = [i for i in received if i not in sentinels]
                    failures.append(f"round {round_}: {len(earlier)} earlier events, {earlier[:5]}...")
    finally:
        for sink in sinks:
            await sink.close()
    assert not failures, "\n".join(failures)
    # Knative's metadata is as Knative shows it; the start point is the controller's, in status.
    shown = yaml.safe_load(cluster.kanal("get", "trigger", "late-0", "-n", NAMESPACE, "-o", "yaml").stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown["metadata"]["creationTimestamp"])
    assert StartPoint.parse(shown["status"]["annotations"][START_OFFSETS]).offsets


async def test_a_trigger_created_while_the_dispatcher_is_down_starts_where_it_was_created(
    cluster: KanalCluster,
) -> None:
    """The start point is kept in Kafka, not in the dispatcher: a Trigger created while no
    dispatcher runs gets neither the events before it nor misses those accepted until one does."""
    broker = await _broker(cluster)
    sink = await RecordingSink().start()
    try:
        cluster.kill("dispatcher", signal.SIGKILL)
        await broker.post([f"before-{n}" for n in range(EARLIER)])
        await broker.apply_trigger("down", sink)
        after = [f"after-{n}" for n in range(30)]
        await broker.post(after)
        await cluster.start("dispatcher")
        sentinels = await broker.sentinels("")
        received = await _sentinels_arrive(sink, sentinels)
        assert sorted(received) == sorted([*after, *sentinels])
    finally:
        await sink.close()


async def test_a_trigger_whose_broker_is_made_again_gets_all_of_the_new_topic(cluster: KanalCluster) -> None:
    """Deleting a Broker deletes its topic; a Broker of that name made again has a new one, all of
    whose events come after the Trigger was created (its start point no longer applies)."""
    broker = await _broker(cluster)
    sink = await RecordingSink().start()
    try:
        await broker.post([f"old-{n}" for n in range(EARLIER)])
        await broker.apply_trigger("kept", sink)
        await broker.post(["first"])
        await _sentinels_arrive(sink, {"first"})
        await asyncio.to_thread(
            broker.admin.delete, [{"kind": "Broker", "namespace": NAMESPACE, "name": "default"}]
        )
        await cluster.apply(BROKER)
        await broker.accepting()
        new = [f"new-{n}" for n in range(30)]
        await broker.post(new)
        sentinels = await broker.sentinels("")
        received = [i for i in await _sentinels_arrive(sink, sentinels) if not i.startswith("ready-")]
        assert sorted(received) == sorted(["first", *new, *sentinels])
    finally:
        await sink.close()
