"""Retry state survives a crash: an event mid-retry when its dispatcher is SIGKILLed continues its
count on the next owner and reaches the dead-letter sink within retry + 1 attempts, plus at most
the one attempt that was in flight (Knative #3746 retried one event 184 times)."""

from __future__ import annotations

import signal

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


async def test_attempts_continue_after_sigkill(cluster: KanalCluster) -> None:
    sink = await RecordingSink(lambda n, r: web.Response(status=500)).start()
    dls = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: rs}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: rs}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
  delivery: {{retry: 5, backoffPolicy: linear, backoffDelay: PT0.4S, deadLetterSink: {{uri: "{dls.url}"}}}}
""")
        headers = {"ce-id": "stubborn", "ce-specversion": "1.0", "ce-type": "t", "ce-source": "s"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(cluster.broker_url("rs", "default"), data=b"", headers=headers) as response,
        ):
            assert response.status == 202
        for round_ in range(2):  # two crashes mid-retry
            await sink.wait_for(2 + 2 * round_, timeout=30)
            cluster.kill("dispatcher", signal.SIGKILL)
            await cluster.start("dispatcher")
        [dead] = await dls.wait_for(1, timeout=60)
        assert dead.header("ce-id") == "stubborn"
        attempts = len(sink.requests)
        assert 6 <= attempts <= 6 + 2, f"{attempts} attempts for retry: 5 across two crashes"
    finally:
        await sink.close()
        await dls.close()
