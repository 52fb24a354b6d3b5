"""Kafka goes away while events flow (the broker process is frozen with SIGSTOP: it keeps its
data, like a broker behind a network partition) and comes back (SIGCONT). The ingress answers
503 with Retry-After within the produce timeout and reports not ready; afterwards everything
recovers without a restart, and every event that got a 202 is delivered."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.events import post_batch
from support.kafka import KafkaUnderTest, OwnBroker
from support.report import summary
from support.sinks import RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

PRODUCE_TIMEOUT = 2.0
# What a request may take beyond the produce timeout (parsing, scheduling on a busy 2-core box).
MARGIN = 1.5
OUTAGE = 8.0
SENDERS = 4


@dataclass(frozen=True)
class Sent:
    event_id: str
    started: float
    took: float
    status: int
    retry_after: str | None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def test_kafka_outage_and_recovery(
    own_cluster: KanalCluster, own_kafka: tuple[OwnBroker, KafkaUnderTest]
) -> None:
    broker, _ = own_kafka
    assert broker.pid is not None
    sink = await RecordingSink().start()
    frozen = False
    try:
        await own_cluster.apply(f"""
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
        url = own_cluster.broker_url("outage", "default")
        readyz = f"{own_cluster.ingress_url}/readyz"
        # The Trigger is reading before the fault (a new Trigger's first delivery takes a group join).
        warmup = await post_batch(url, [(f"w{i}", "t") for i in range(10)], "outage-test")
        await sink.wait_for(len(warmup), timeout=30)

        log: list[Sent] = []
        counter = iter(range(1_000_000))
        stop = asyncio.Event()

        async def sender(session: aiohttp.ClientSession) -> None:
            while not stop.is_set():
                event_id = f"o{next(counter)}"
                headers = {
                    "ce-id": event_id,
                    "ce-specversion": "1.0",
                    "ce-type": "t",
                    "ce-source": "outage-test",
                    "content-type": "application/json",
                }
                started = time.monotonic()
                async with session.post(url, data=b'{"outage": true}', headers=headers) as response:
                    await response.read()
                    log.append(
                        Sent(
                            event_id,
                            started,
                            time.monotonic() - started,
                            response.status,
                            response.headers.get("Retry-After"),
                        )
                    )
                await asyncio.sleep(0.02)

        not_ready_at: float | None = None
        ready_again_at: float | None = None
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as tg:
            for _ in range(SENDERS):
                tg.create_task(sender(session))
            await asyncio.sleep(2.0)
            froze_at = time.monotonic()
            os.kill(broker.pid, signal.SIGSTOP)
            frozen = True
            try:
                while time.monotonic() - froze_at < OUTAGE:
                    if not_ready_at is None and not await asyncio.to_thread(_ready, readyz):
                        not_ready_at = time.monotonic()
                    await asyncio.sleep(0.25)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
                frozen = False
            resumed_at = time.monotonic()
            while ready_again_at is None and time.monotonic() - resumed_at < 60:
                if await asyncio.to_thread(_ready, readyz):
                    ready_again_at = time.monotonic()
                else:
                    await asyncio.sleep(0.25)
            # Keep the flow going after recovery: these must all be accepted.
            await asyncio.sleep(3.0)
            stop.set()

        statuses = Counter(s.status for s in log)
        during = [s for s in log if froze_at <= s.started < resumed_at]
        accepted = {s.event_id for s in log if s.status == 202} | set(warmup)
        refused = [s for s in log if s.status != 202]

        assert set(statuses) <= {202, 503}, statuses
        assert refused, "no request was refused while Kafka was frozen"
        for s in refused:
            assert s.retry_after is not None and int(s.retry_after) > 0, s
        slowest = max(s.took for s in log)
        assert slowest < PRODUCE_TIMEOUT + MARGIN, f"a request took {slowest:.2f}s"
        assert not_ready_at is not None, "/readyz stayed 200 while Kafka was frozen"
        assert not_ready_at - froze_at < PRODUCE_TIMEOUT + MARGIN + 0.5
        assert ready_again_at is not None, "the ingress never became ready again"
        after = [s for s in log if s.started > ready_again_at + 0.5]
        assert after and all(s.status == 202 for s in after), Counter(s.status for s in after)

        # Every 202, before, during and after the outage, is delivered.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while accepted - set(sink.ids()) and loop.time() < deadline:
            await asyncio.sleep(0.5)
        ids = Counter(sink.ids())
        missing = accepted - set(ids)
        duplicates = {i: n for i, n in ids.items() if n > 1}
        # A 503 means "not known to be stored": the producer may still write it when Kafka returns.
        refused_but_delivered = {s.event_id for s in refused} & set(ids)
        print(f"\nduplicates: {sorted(duplicates.items())[:20]}")
        print(
            f"outage {OUTAGE:.0f}s: not ready after {not_ready_at - froze_at:.2f}s, ready again "
            f"{ready_again_at - resumed_at:.2f}s after resume; slowest request {slowest:.2f}s; "
            f"{len(during)} requests during the outage; refused but delivered: {len(refused_but_delivered)}"
        )
        summary(
            "kafka-outage",
            faults=f"broker frozen {OUTAGE:.0f} s (SIGSTOP) then resumed",
            sent=len(log) + len(warmup),
            accepted=len(accepted),
            refused_503=len(refused),
            delivered=len(set(ids)),
            dead_lettered=0,
            lost=len(missing),
            duplicates=sum(n - 1 for n in duplicates.values()),
            refused_but_delivered=len(refused_but_delivered),
            slowest_request_s=round(slowest, 2),
        )
        assert not missing, f"accepted but not delivered: {sorted(missing)[:20]}"
    finally:
        if frozen:
            os.kill(broker.pid, signal.SIGCONT)
        await sink.close()
