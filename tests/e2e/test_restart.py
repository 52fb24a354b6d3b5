"""Kafka is the only state: restarting every Kanal process loses no resource and no accepted event."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.mark.kafka_compat
async def test_restart_everything_keeps_resources_and_events(cluster: KanalCluster) -> None:
    sink = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: r}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: r}}
spec:
  broker: default
  filter: {{attributes: {{type: keep}}}}
  subscriber: {{uri: "{sink.url}"}}
""")
        before = json.loads(cluster.kanal("get", "trigger", "t", "-n", "r", "-o", "json").stdout)
        cluster.kill("dispatcher", signal.SIGKILL)  # nothing is delivered while it is down
        url = cluster.broker_url("r", "default")
        async with aiohttp.ClientSession() as session:
            for i in range(50):
                headers = {"ce-id": f"r{i}", "ce-specversion": "1.0", "ce-type": "keep", "ce-source": "s"}
                async with session.post(url, data=b"%d" % i, headers=headers) as response:
                    assert response.status == 202
        cluster.stop()
        assert sink.requests == []
        await cluster.start()
        after = json.loads(cluster.kanal("get", "trigger", "t", "-n", "r", "-o", "json").stdout)
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["status"]["subscriberUri"] == sink.url
        await sink.wait_for(50, timeout=30)
        assert {f"r{i}" for i in range(50)} <= set(sink.ids())
        assert {r.body for r in sink.requests} == {b"%d" % i for i in range(50)}
    finally:
        await sink.close()


async def test_a_dispatcher_stopped_while_joining_its_group_exits_cleanly(cluster: KanalCluster) -> None:
    """SIGTERM while the dispatcher's consumer is still joining its group (the embedded broker
    holds a group's first join for seconds): the assignment that completes during the stop is
    left to the partitions' next owner, with no traceback, and the process exits 0."""
    await cluster.apply("""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: j}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: j}
spec: {broker: default, subscriber: {uri: "http://127.0.0.1:9/"}}
""")
    for _ in range(100):
        if "reading " in cluster.tail("dispatcher"):
            break
        await asyncio.sleep(0.1)
    assert "reading " in cluster.tail("dispatcher")  # the consumer is joining now
    await asyncio.sleep(2.0)
    cluster.kill("dispatcher", signal.SIGTERM)
    log = cluster.tail("dispatcher", 200)
    assert cluster.processes["dispatcher"].returncode == 0, log
    assert "Traceback" not in log and "failed on partition assignment" not in log, log
