"""A real Prometheus server scrapes a running Kanal on loopback; what it stores, asked through its
HTTP API, counts the events sent, with the metric names and labels the README documents."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channel.embedded import free_port
from support.cluster import KanalCluster
from support.events import post_event
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


@pytest.fixture
def prometheus(cluster: KanalCluster, tmp_path: Path) -> Any:
    port = free_port()
    jobs = "".join(
        f"""
  - job_name: kanal-{name}
    static_configs: [{{targets: ["127.0.0.1:{cluster.metrics_port(name)}"]}}]"""
        for name in ("controller", "ingress", "dispatcher")
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:{jobs}\n")
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except OSError:
        return []
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def _wait_for_value(base: str, promql: str, expected: float, timeout: float = 45.0) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: list[dict[str, Any]] = []
    while loop.time() < deadline:
        last = await asyncio.to_thread(_query, base, promql)
        if last and float(last[0]["value"][1]) == expected:
            return dict(last[0]["metric"])
        await asyncio.sleep(1.0)
    raise AssertionError(f"{promql}: expected {expected}, Prometheus has {last}")


async def test_prometheus_counts_what_was_sent(cluster: KanalCluster, prometheus: str) -> None:
    sink = await RecordingSink().start()
    channel_sink = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: prom}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: greetings, namespace: prom}}
spec:
  broker: default
  filter: {{attributes: {{type: greeting}}}}
  subscriber: {{uri: "{sink.url}"}}
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: pipe, namespace: prom}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: greetings, namespace: prom}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: pipe}}
  subscriber: {{uri: "{channel_sink.url}"}}
""")
        async with aiohttp.ClientSession() as session:
            for i in range(7):
                event_type = "greeting" if i < 5 else "other"
                headers = {
                    "ce-id": f"p{i}",
                    "ce-specversion": "1.0",
                    "ce-type": event_type,
                    "ce-source": "prometheus-test",
                    "content-type": "application/json",
                }
                async with session.post(
                    cluster.broker_url("prom", "default"), data=b"{}", headers=headers
                ) as response:
                    assert response.status == 202
            async with session.post(
                cluster.broker_url("prom", "default"), data=b"{}", headers={"content-type": "text/plain"}
            ) as response:
                assert response.status == 400
            # A Channel's egress is counted too, apart from the Trigger of the same name.
            for i in range(3):
                await post_event(f"{cluster.ingress_url}/channels/prom/pipe", f"c{i}", "greeting", "prom")
        await sink.wait_for(5)
        await channel_sink.wait_for(3)

        for job in ("controller", "ingress", "dispatcher"):
            await _wait_for_value(prometheus, f'up{{job="kanal-{job}"}}', 1.0)
        labels = await _wait_for_value(
            prometheus,
            'kanal_ingress_events_total{kind="broker",namespace="prom",name="default",'
            'event_type="greeting",code="202"}',
            5.0,
        )
        assert labels["job"] == "kanal-ingress"
        await _wait_for_value(
            prometheus, 'sum(kanal_ingress_events_total{kind="broker",namespace="prom",code="202"})', 7.0
        )
        await _wait_for_value(
            prometheus, 'sum(kanal_ingress_events_total{kind="channel",namespace="prom",code="202"})', 3.0
        )
        await _wait_for_value(prometheus, 'sum(kanal_ingress_events_total{namespace="prom",code="400"})', 1.0)
        labels = await _wait_for_value(
            prometheus,
            'kanal_dispatcher_events_total{namespace="prom",kind="trigger",trigger="greetings",outcome="delivered"}',
            5.0,
        )
        assert labels["parent"] == "default"
        labels = await _wait_for_value(
            prometheus,
            'kanal_dispatcher_events_total{namespace="prom",kind="subscription",trigger="greetings",'
            'outcome="delivered"}',
            3.0,
        )
        assert labels["parent"] == "pipe"
        egress = await _wait_for_value(
            prometheus,
            'sum by (namespace, parent) (kanal_dispatcher_events_total{kind="subscription",'
            'outcome="delivered"})',
            3.0,
        )
        assert egress == {"namespace": "prom", "parent": "pipe"}
        await _wait_for_value(
            prometheus,
            'kanal_dispatcher_events_total{namespace="prom",trigger="greetings",outcome="filtered"}',
            2.0,
        )
        await _wait_for_value(
            prometheus,
            'sum(kanal_dispatcher_attempts_total{namespace="prom",trigger="greetings",code="202"})',
            5.0 + 3.0,
        )
        # Everything delivered and committed: the Trigger's lag drains to zero.
        await _wait_for_value(
            prometheus,
            'sum(kanal_dispatcher_consumer_lag{namespace="prom",kind="trigger",trigger="greetings"})',
            0.0,
        )
        latency = await asyncio.to_thread(
            _query,
            prometheus,
            'kanal_ingress_request_duration_seconds_count{namespace="prom",name="default",code="202"}',
        )
        assert latency and float(latency[0]["value"][1]) == 7.0
    finally:
        await sink.close()
        await channel_sink.close()
