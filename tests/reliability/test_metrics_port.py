"""A sender cannot grow the ingress's metrics, nor read them: thousands of distinct `ce-type`s make
at most N+1 event-type series (the first N types seen and `other`), the exposition stays small,
and /metrics answers only on the metrics port, a 404 on the port event senders reach."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import aiohttp
import pytest

from support.cluster import KanalCluster

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

MAX_TYPES = 5
TYPES = 3000
BATCH = 500
_SAMPLE = re.compile(r"^kanal_ingress_events_total\{(.*)\} (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _series(exposition: str) -> dict[str, float]:
    """event_type -> count of the 202 series of the test's Broker (labels in any order)."""
    out = {}
    for labels, value in _SAMPLE.findall(exposition):
        named = dict(_LABEL.findall(labels))
        if named["namespace"] == "cardinality" and named["code"] == "202":
            out[named["event_type"]] = float(value)
    return out


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    return {"ingress_metrics_max_event_types": str(MAX_TYPES)}


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_distinct_types_keep_the_metrics_bounded(cluster: KanalCluster) -> None:
    await cluster.apply("""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: cardinality}
""")
    url = cluster.broker_url("cardinality", "default")
    async with aiohttp.ClientSession() as session:
        for start in range(0, TYPES, BATCH):
            batch = [
                {"specversion": "1.0", "id": f"e{i}", "source": "flood", "type": f"flood.type.{i}"}
                for i in range(start, start + BATCH)
            ]
            async with session.post(
                url, data=json.dumps(batch), headers={"content-type": "application/cloudevents-batch+json"}
            ) as response:
                assert response.status == 202, await response.text()
        for i in range(20):  # binary mode too, one type per request
            headers = {"ce-specversion": "1.0", "ce-id": f"b{i}", "ce-source": "flood", "ce-type": f"b.{i}"}
            async with session.post(url, data=b"", headers=headers) as response:
                assert response.status == 202

    status, body = _get(f"{cluster.ingress_url}/metrics")
    assert status == 404 and b"kanal_ingress" not in body
    status, body = _get(f"http://127.0.0.1:{cluster.metrics_port('ingress')}/metrics")
    assert status == 200
    series = _series(body.decode())
    assert len(series) <= MAX_TYPES + 1, sorted(series)
    assert series["other"] == TYPES + 20 - MAX_TYPES
    assert sum(series.values()) == TYPES + 20
    assert len(body) < 64 * 1024, len(body)  # 100,000 types made it 10.7 MB before
