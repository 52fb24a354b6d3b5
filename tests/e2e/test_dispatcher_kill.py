"""At-least-once across a crash: SIGKILL the dispatcher while events flow, start it again, and
every accepted event still reaches the subscriber (duplicates allowed, loss not)."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.sinks import RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

MANIFEST = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: crash}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all, namespace: crash}}
spec:
  broker: default
  subscriber: {{uri: "{sink}"}}
"""


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    return {"dispatcher_max_in_flight": "16"}


async def test_sigkill_dispatcher_mid_stream_loses_nothing(cluster: KanalCluster) -> None:
    total = 400

    async def slow(n: int, request: object) -> web.Response:
        return web.Response(status=202)

    sink = await RecordingSink().start()
    try:
        await cluster.apply(MANIFEST.format(sink=sink.url))
        url = cluster.broker_url("crash", "default")
        accepted: list[str] = []
        async with aiohttp.ClientSession() as session:

            async def send(i: int) -> None:
                headers = {
                    "Ce-Id": f"e{i}",
                    "Ce-Specversion": "1.0",
                    "Ce-Type": "t",
                    "Ce-Source": "s",
                    "Content-Type": "application/json",
                }
                async with session.post(url, data=b'{"i":%d}' % i, headers=headers) as response:
                    assert response.status == 202
                    accepted.append(f"e{i}")

            for start in range(0, total, 20):
                await asyncio.gather(*(send(i) for i in range(start, start + 20)))
                if start == 100:
                    await sink.wait_for(20)
                    cluster.kill("dispatcher", signal.SIGKILL)
                if start == 200:
                    await cluster.start("dispatcher")
        assert len(accepted) == total
        await sink.wait_for(total, timeout=60)
        deadline = asyncio.get_running_loop().time() + 60
        while set(accepted) - set(sink.ids()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        missing = set(accepted) - set(sink.ids())
        assert not missing, f"{len(missing)} accepted events never delivered: {sorted(missing)[:10]}"
        duplicates = len(sink.ids()) - len(set(sink.ids()))
        print(f"\n{total} accepted, {len(set(sink.ids()))} delivered, {duplicates} duplicates after SIGKILL")
    finally:
        await sink.close()
