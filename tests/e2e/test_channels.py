"""Channels and Subscriptions end to end: every Subscription gets every event; replies go to
`reply`; a Subscription without `reply` discards replies; `kanal get` lists them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest
from support.sinks import Received, RecordingSink, reply_event

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


@pytest.fixture
async def cluster(kafka: KafkaUnderTest, tmp_path: Path) -> AsyncIterator[KanalCluster]:
    cluster = KanalCluster(kafka, tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _replying(n: int, request: Received) -> web.Response:
    return reply_event(f"reply-{request.header('ce-id')}", "reply.type", b'{"reply":true}')


async def test_every_subscription_gets_every_event_and_replies_go_to_reply(cluster: KanalCluster) -> None:
    s1 = await RecordingSink(_replying).start()
    s2 = await RecordingSink(_replying).start()
    replies = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: orders, namespace: ch}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: s1, namespace: ch}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: orders}}
  subscriber: {{uri: "{s1.url}"}}
  reply: {{uri: "{replies.url}"}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: s2, namespace: ch}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: orders}}
  subscriber: {{uri: "{s2.url}"}}
""")
        channel = json.loads(cluster.kanal("get", "channel", "orders", "-n", "ch", "-o", "json").stdout)
        url = channel["status"]["address"]["url"]
        assert url == f"{cluster.ingress_url}/channels/ch/orders"
        assert [s["ready"] for s in channel["status"]["subscribers"]] == ["True", "True"]
        assert len(channel["spec"]["subscribers"]) == 2
        listed = cluster.kanal("get", "subscriptions", "-n", "ch").stdout.splitlines()
        assert listed[0].split() == ["NAME", "READY", "REASON", "CHANNEL", "SUBSCRIBER_URI", "LAG", "AGE"]

        async with aiohttp.ClientSession() as session:
            for i in range(3):
                headers = {"ce-id": f"c{i}", "ce-specversion": "1.0", "ce-type": "order", "ce-source": "shop"}
                async with session.post(url, data=b"", headers=headers) as response:
                    assert response.status == 202
            # The Knative host form reaches the same Channel.
            headers = {
                "ce-id": "c3",
                "ce-specversion": "1.0",
                "ce-type": "order",
                "ce-source": "shop",
                "Host": "orders-kn-channel.ch.svc.cluster.local",
            }
            async with session.post(f"{cluster.ingress_url}/", data=b"", headers=headers) as response:
                assert response.status == 202
        await s1.wait_for(4)
        await s2.wait_for(4)
        await replies.wait_for(4)
        await asyncio.sleep(1.0)
        assert sorted(s1.ids()) == sorted(s2.ids()) == ["c0", "c1", "c2", "c3"]
        assert sorted(replies.ids()) == ["reply-c0", "reply-c1", "reply-c2", "reply-c3"]  # only s1's
    finally:
        for sink in (s1, s2, replies):
            await sink.close()
