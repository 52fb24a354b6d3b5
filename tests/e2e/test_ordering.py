"""Ordered delivery: per partition one event at a time, so events with one partition key arrive in
order, retries included, even with a flaky subscriber."""

from __future__ import annotations

import random

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


async def test_ordered_per_key_with_a_flaky_subscriber(cluster: KanalCluster) -> None:
    rng = random.Random(7)

    def flaky(n: int, r: Received) -> web.Response:
        return web.Response(status=503 if rng.random() < 0.3 else 202)

    sink = await RecordingSink(flaky).start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: o}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: ordered
  namespace: o
  annotations: {{kafka.eventing.knative.dev/delivery.order: ordered}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
  delivery: {{retry: 20, backoffPolicy: linear, backoffDelay: PT0.01S}}
""")
        keys = ["a", "b", "c"]
        async with aiohttp.ClientSession() as session:
            for i in range(60):
                key = keys[i % 3]
                headers = {
                    "ce-id": f"{key}-{i // 3}",
                    "ce-specversion": "1.0",
                    "ce-type": "t",
                    "ce-source": "s",
                    "ce-partitionkey": key,
                    "ce-seq": str(i // 3),
                }
                async with session.post(cluster.broker_url("o", "default"), data=b"", headers=headers) as r:
                    assert r.status == 202
        delivered: dict[str, list[int]] = {k: [] for k in keys}
        attempts: dict[str, list[int]] = {k: [] for k in keys}
        while sum(len(v) for v in delivered.values()) < 60:
            await sink.wait_for(len(sink.requests) + 1, timeout=60)
            delivered = {k: [] for k in keys}
            attempts = {k: [] for k in keys}
            for n, request in enumerate(sink.requests, 1):
                key, seq = request.header("ce-partitionkey") or "", int(request.header("ce-seq") or 0)
                attempts[key].append(seq)
                if rng_status(sink, n) == 202:
                    delivered[key].append(seq)
        for key in keys:
            assert attempts[key] == sorted(attempts[key]), f"{key}: attempts out of order {attempts[key]}"
            assert delivered[key] == list(range(20)), key
    finally:
        await sink.close()


def rng_status(sink: RecordingSink, n: int) -> int:
    """The status the flaky responder gave request `n` (replayed from the same seed)."""
    rng = random.Random(7)
    status = 202
    for _ in range(n):
        status = 503 if rng.random() < 0.3 else 202
    return status
