"""Chaos: 10,000 events through 3 Triggers with a subscriber failing 20% of requests, while a
dispatcher is SIGKILLed and restarted and a second dispatcher joins. Afterwards every selected
event was delivered or dead-lettered (none lost); the duplicates are counted and reported."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

TOTAL = 10_000
TYPES = ["red", "green", "blue"]


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    return {"kafka_topic_partitions": "6"}


async def test_chaos_none_lost(cluster: KanalCluster) -> None:
    rng = random.Random(11)

    delivered: dict[str, int] = {}  # id -> number of 202 answers

    def flaky(n: int, r: Received) -> web.Response:
        if rng.random() < 0.2:
            return web.Response(status=500)
        event_id = r.header("ce-id") or ""
        delivered[event_id] = delivered.get(event_id, 0) + 1
        return web.Response(status=202)

    sinks = {t: await RecordingSink(flaky).start() for t in TYPES}
    dls = await RecordingSink().start()
    second: subprocess.Popen[bytes] | None = None
    try:
        manifest = (
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: chaos}\n"
        )
        for t in TYPES:
            manifest += (
                "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
                f"metadata: {{name: {t}, namespace: chaos}}\n"
                f"spec:\n  broker: default\n  filter: {{attributes: {{type: {t}}}}}\n"
                f"  subscriber: {{uri: '{sinks[t].url}'}}\n"
                f"  delivery: {{retry: 3, backoffDelay: PT0.01S, deadLetterSink: {{uri: '{dls.url}'}}}}\n"
            )
        await cluster.apply(manifest)
        url = cluster.broker_url("chaos", "default")
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def send(i: int) -> None:
                headers = {
                    "ce-id": f"x{i}",
                    "ce-specversion": "1.0",
                    "ce-type": TYPES[i % 3],
                    "ce-source": "chaos",
                }
                async with session.post(url, data=b"", headers=headers) as response:
                    assert response.status == 202

            for start in range(0, TOTAL, 500):
                await asyncio.gather(*(send(i) for i in range(start, start + 500)))
                if start == 2000:
                    cluster.kill("dispatcher", signal.SIGKILL)
                elif start == 3500:
                    await cluster.start("dispatcher")
                elif start == 5000:
                    env = dict(cluster.env, KANAL_DISPATCHER_PORT="0")
                    second = subprocess.Popen(
                        [sys.executable, "-m", "kanal", "dispatcher"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                elif start == 7000:
                    cluster.kill("dispatcher", signal.SIGKILL)
                    await cluster.start("dispatcher")

        expected = {t: {f"x{i}" for i in range(TOTAL) if TYPES[i % 3] == t} for t in TYPES}

        def outcome() -> dict[str, set[str]]:
            dead = {r.header("ce-id") for r in dls.requests}
            return {t: (set(delivered) & expected[t]) | (dead & expected[t]) for t in TYPES}

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180
        while any(expected[t] - outcome()[t] for t in TYPES) and loop.time() < deadline:
            await asyncio.sleep(0.5)
        for t in TYPES:
            missing = expected[t] - outcome()[t]
            assert not missing, f"{t}: {len(missing)} events lost, e.g. {sorted(missing)[:5]}"
        attempts = sum(len(s.requests) for s in sinks.values())
        duplicates = sum(count - 1 for count in delivered.values() if count > 1)
        print(
            f"\nchaos: {TOTAL} sent, {attempts} subscriber requests, {len(delivered)} delivered, "
            f"{len(dls.requests)} dead-lettered, 0 lost, {duplicates} duplicates"
        )
    finally:
        if second is not None:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        for s in [*sinks.values(), dls]:
            await s.close()
