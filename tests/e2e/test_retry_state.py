"""Retry state survives a crash: an event mid-retry when its dispatcher is SIGKILLed continues its
count on the next owner and reaches the dead-letter sink within retry + 1 attempts, plus at most
the one attempt that was in flight (Knative #3746 retried one event 184 times). A SIGTERM
mid-backoff stops the dispatcher at once, and the next one continues the event."""

from __future__ import annotations

import signal
import time

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_event
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def _trigger(subscriber: str, delivery: str) -> str:
    """Broker rs/default and its Trigger t to `subscriber`, with `delivery`."""
    return f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: rs}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: rs}}
spec:
  broker: default
  subscriber: {{uri: "{subscriber}"}}
  delivery: {delivery}
"""


async def test_attempts_continue_after_sigkill(cluster: KanalCluster) -> None:
    sink = await RecordingSink(lambda n, r: web.Response(status=500)).start()
    dls = await RecordingSink().start()
    try:
        dead_letter = f'deadLetterSink: {{uri: "{dls.url}"}}'
        delivery = f"{{retry: 5, backoffPolicy: linear, backoffDelay: PT0.4S, {dead_letter}}}"
        await cluster.apply(_trigger(sink.url, delivery))
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


async def test_sigterm_does_not_wait_out_a_backoff(cluster: KanalCluster) -> None:
    """A dispatcher stopped while an event waits between attempts exits without waiting out the
    backoff (here longer than the dispatcher's bound on finishing deliveries in flight, which
    would log that some did not finish). The event is not lost: the next dispatcher delivers it
    after the rest of its backoff."""
    sink = await RecordingSink(lambda n, r: web.Response(status=500 if n == 1 else 202)).start()
    try:
        await cluster.apply(_trigger(sink.url, "{retry: 3, backoffPolicy: linear, backoffDelay: PT12S}"))
        await post_event(cluster.broker_url("rs", "default"), "patient", "t", "s")
        await sink.wait_for(1, timeout=30)
        started = time.monotonic()
        cluster.kill("dispatcher", signal.SIGTERM)
        print(f"\ndispatcher exited {time.monotonic() - started:.1f} s after SIGTERM, mid-backoff")
        assert cluster.processes["dispatcher"].returncode == 0, cluster.tail("dispatcher")
        last_run = cluster.log_path("dispatcher").read_text().rsplit("==== start", 1)[-1]
        assert "did not finish" not in last_run, last_run
        assert len(sink.requests) == 1  # the backoff was not cut short into an early attempt

        await cluster.start("dispatcher")
        await sink.wait_for(2, timeout=60)
        assert sink.ids() == ["patient", "patient"]
    finally:
        await sink.close()
