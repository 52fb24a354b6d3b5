"""Poison-key isolation in ordered delivery: an event being retried holds back only the events of
its own partition key. Real processes, one partition, so every key shares it."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_batch
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

KEYS = [f"k{i:02d}" for i in range(20)]
PER_KEY = 5
FAILING_FOR = 10.0  # seconds the poison key's subscriber answers 503


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    return {"kafka_topic_partitions": "1"}


async def test_a_failing_key_holds_back_only_its_own_events(cluster: KanalCluster) -> None:
    began: list[float] = []
    statuses: list[int] = []  # what each request was answered, in order

    def respond(n: int, request: Received) -> web.Response:
        failing = request.header("ce-partitionkey") == "poison" and time.monotonic() < began[0] + FAILING_FOR
        statuses.append(503 if failing else 202)
        return web.Response(status=statuses[-1])

    sink = await RecordingSink(respond).start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: pk}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: ordered
  namespace: pk
  annotations: {{kafka.eventing.knative.dev/delivery.order: ordered}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
  delivery: {{retry: 30, backoffPolicy: linear, backoffDelay: PT0.2S}}
""")
        url = cluster.broker_url("pk", "default")
        began.append(time.monotonic())
        # The poison key's first event comes first on the partition, then every key's in turn.
        for seq in range(PER_KEY):
            await post_batch(url, [(f"poison-{seq}", "t")], "test", partitionkey="poison", seq=str(seq))
            for key in KEYS:
                await post_batch(url, [(f"{key}-{seq}", "t")], "test", partitionkey=key, seq=str(seq))
        total = len(KEYS) * PER_KEY + PER_KEY
        deadline = time.monotonic() + 90
        while statuses.count(202) < total:
            assert time.monotonic() < deadline, f"{len(sink.requests)} requests"
            await sink.wait_for(len(sink.requests) + 1, timeout=90)
    finally:
        await sink.close()
    delivered: dict[str, list[int]] = {}
    attempts: dict[str, list[int]] = {}
    at: dict[str, list[float]] = {}
    for request, status in zip(sink.requests, statuses, strict=False):
        key, seq = request.header("ce-partitionkey") or "", int(request.header("ce-seq") or -1)
        attempts.setdefault(key, []).append(seq)
        if status == 202:
            delivered.setdefault(key, []).append(seq)
            at.setdefault(key, []).append(request.at - began[0])
    others_done = max(at[key][-1] for key in KEYS)
    poison_first = at["poison"][0]
    print(
        f"\nother keys all delivered {others_done:.2f} s after the first event; the poison key's first"
        f" delivery at {poison_first:.2f} s after {attempts['poison'].count(0)} attempts"
    )
    for key in [*KEYS, "poison"]:
        assert delivered[key] == list(range(PER_KEY)), key  # each key in order, none lost
        assert attempts[key] == sorted(attempts[key]), f"{key}: attempts out of order {attempts[key]}"
    # The other keys did not wait for the poison key: all of them were delivered while it failed.
    assert others_done < FAILING_FOR <= poison_first
