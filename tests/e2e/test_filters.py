"""Trigger filters end to end: one Broker, a Trigger per dialect, each receives exactly what it selects;
an invalid filter is refused by `kanal apply` and nothing of that apply is stored."""

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

# trigger name -> (filter YAML under spec, ids it must receive)
TRIGGERS = {
    "legacy": ("filter: {attributes: {type: order.created, region: ''}}", {"e1", "e6"}),
    "exact": ("filters: [{exact: {type: order.created, source: shop}}]", {"e1", "e6"}),
    "prefix": ("filters: [{prefix: {type: order.}}]", {"e1", "e2", "e6"}),
    "suffix": ("filters: [{suffix: {type: .cancelled}}]", {"e2", "e3"}),
    "any": ("filters: [{any: [{exact: {type: user.cancelled}}, {prefix: {source: bank}}]}]", {"e3", "e4"}),
    "all": ("filters: [{all: [{prefix: {type: order.}}, {exact: {region: eu}}]}]", {"e1", "e2"}),
    "not": ("filters: [{not: {prefix: {type: order.}}}]", {"e3", "e4", "e5"}),
    "cesql": ("filters: [{cesql: \"amount > 100 AND (region = 'eu' OR region = 'us')\"}]", {"e1", "e6"}),
    "nofilter": ("{}", {"e1", "e2", "e3", "e4", "e5", "e6"}),
}

EVENTS = [
    ("e1", "order.created", "shop", {"region": "eu", "amount": "150"}),
    ("e2", "order.cancelled", "shop", {"region": "eu", "amount": "5"}),
    ("e3", "user.cancelled", "crm", {}),
    ("e4", "payment.done", "bank-1", {"amount": "900"}),
    ("e5", "ping", "probe", {"region": "eu"}),
    ("e6", "order.created", "shop", {"region": "us", "amount": "101"}),
]


@pytest.fixture
async def cluster(kafka: KafkaUnderTest, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(kafka, tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_each_dialect_selects_exactly_its_events(cluster: KanalCluster) -> None:
    sinks = {name: await RecordingSink().start() for name in TRIGGERS}
    try:
        docs = ["apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: f}"]
        for name, (spec, _) in TRIGGERS.items():
            body = "" if spec == "{}" else f"  {spec}\n"
            docs.append(
                "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
                f"metadata: {{name: {name}, namespace: f}}\n"
                f"spec:\n  broker: default\n{body}  subscriber: {{uri: '{sinks[name].url}'}}"
            )
        await cluster.apply("\n---\n".join(docs))
        url = cluster.broker_url("f", "default")
        async with aiohttp.ClientSession() as session:
            for event_id, event_type, source, extensions in EVENTS:
                headers = {
                    "ce-id": event_id,
                    "ce-specversion": "1.0",
                    "ce-type": event_type,
                    "ce-source": source,
                    **{f"ce-{k}": v for k, v in extensions.items()},
                }
                async with session.post(url, data=b"", headers=headers) as response:
                    assert response.status == 202
        for name, (_, expected) in TRIGGERS.items():
            await sinks[name].wait_for(len(expected))
        await asyncio.sleep(1.0)
        for name, (_, expected) in TRIGGERS.items():
            assert sorted(i or "" for i in sinks[name].ids()) == sorted(expected), name
    finally:
        for sink in sinks.values():
            await sink.close()


@pytest.mark.parametrize(
    ("filters", "pointer"),
    [
        pytest.param("[{cesql: 'this is wrong'}]", "spec.filters[0].cesql", id="cesql-syntax"),
        pytest.param("[{exact: {type: ''}}]", "spec.filters[0].exact", id="empty-exact-value"),
        pytest.param("[{all: []}]", "spec.filters[0].all", id="empty-all"),
        pytest.param("[{exact: {type: a}, suffix: {type: b}}]", "spec.filters[0]", id="two-dialects"),
        pytest.param("[{regex: {type: '.*'}}]", "spec.filters[0]", id="unknown-dialect"),
    ],
)
async def test_invalid_filter_is_refused_and_nothing_applied(
    cluster: KanalCluster, filters: str, pointer: str
) -> None:
    manifest = (
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: bad}\n---\n"
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: bad}\n"
        f"spec:\n  broker: b\n  filters: {filters}\n  subscriber: {{uri: 'http://127.0.0.1:1/'}}\n"
    )
    result = await asyncio.to_thread(cluster.kanal, "apply", "-f", "-", stdin=manifest)
    assert result.returncode == 1
    assert pointer in result.stderr, result.stderr
    listed = await asyncio.to_thread(cluster.kanal, "get", "brokers", "-n", "bad", "-o", "json")
    assert json.loads(listed.stdout)["items"] == []  # the valid Broker was not applied either
