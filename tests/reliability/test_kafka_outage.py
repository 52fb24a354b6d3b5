"""Kafka goes away while events flow (the broker process is frozen with SIGSTOP: it keeps its
data, like a broker behind a network partition) and comes back (SIGCONT). The ingress answers
503 quickly, with Retry-After, and reports not ready; afterwards everything recovers without a
restart, and every event that got a 202 is delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from channel.embedded import EmbeddedKafka
from support.cluster import KanalCluster
from support.kafka import KafkaUnderTest
from support.report import summary
from support.sinks import RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

PRODUCE_TIMEOUT = 2.0


@pytest.fixture
async def cluster(
    own_kafka: tuple[EmbeddedKafka, KafkaUnderTest], tmp_path: Path
) -> AsyncIterator[KanalCluster]:
    _, kafka = own_kafka
    cluster = KanalCluster(kafka, tmp_path, kafka_produce_timeout=str(PRODUCE_TIMEOUT))
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def test_kafka_outage_and_recovery(
    cluster: KanalCluster, own_kafka: tuple[EmbeddedKafka, KafkaUnderTest]
) -> None:
    broker, _ = own_kafka
    assert broker.pid is not None
    sink = await RecordingSink().start()
    accepted: list[str] = []
    refused: list[tuple[int, float, str | None]] = []
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: outage}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all, namespace: outage}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
""")
        url = cluster.broker_url("outage", "default")
        readyz = f"{cluster.ingress_url}/readyz"
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def send(i: int) -> None:
                headers = {
                    "ce-id": f"o{i}",
                    "ce-specversion": "1.0",
                    "ce-type": "t",
                    "ce-source": "outage-test",
                    "content-type": "application/json",
                }
                started = time.monotonic()
                async with session.post(url, data=b'{"i": %d}' % i, headers=headers) as response:
                    took = time.monotonic() - started
                    if response.status == 202:
                        accepted.append(f"o{i}")
                    else:
                        refused.append((response.status, took, response.headers.get("Retry-After")))

            for i in range(50):
                await send(i)
            await sink.wait_for(50)

            os.kill(broker.pid, signal.SIGSTOP)
            try:
                outage = list(range(50, 60))
                await asyncio.gather(*(send(i) for i in outage))
                # Readiness follows: the failed writes (and, later, the resource log) say so.
                assert not await asyncio.to_thread(_ready, readyz)
            finally:
                os.kill(broker.pid, signal.SIGCONT)

            assert refused, "no request was refused while Kafka was frozen"
            for status, took, retry_after in refused:
                assert status == 503
                assert retry_after is not None and int(retry_after) > 0
                assert took < PRODUCE_TIMEOUT + 3.0, f"a request hung for {took:.1f}s"

            # Recovery without a restart: ready again, and new events are accepted.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while not await asyncio.to_thread(_ready, readyz):
                assert loop.time() < deadline, "the ingress never became ready again"
                await asyncio.sleep(0.5)
            for i in range(60, 110):
                await send(i)
        assert len([a for a in accepted if int(a[1:]) >= 60]) == 50

        # Every 202, before, during (a write may have made it) and after the outage, arrives.
        deadline = loop.time() + 60
        while set(accepted) - set(sink.ids()) and loop.time() < deadline:
            await asyncio.sleep(0.5)
        missing = set(accepted) - set(sink.ids())
        assert not missing, f"accepted but not delivered: {sorted(missing)}"
        ids = sink.ids()
        summary(
            "kafka-outage",
            faults="broker frozen (SIGSTOP) then resumed",
            sent=110,
            accepted=len(accepted),
            refused_503=len(refused),
            delivered=len(set(ids)),
            lost=len(missing),
            duplicates=len(ids) - len(set(ids)),
        )
    finally:
        await sink.close()
