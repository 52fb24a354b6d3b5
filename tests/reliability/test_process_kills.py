"""kill -9 of the ingress, the dispatcher and the controller at random points while events flow
(seeded, bounded): resources survive, every event that got a 202 is delivered, duplicates are
counted. Sends that fail while the ingress is down are retried by the sender, as a Source does."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import Counter

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.report import summary
from support.sinks import RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

EVENTS = 1500


@pytest.mark.timeout(240)
async def test_kill_every_component_under_load(cluster: KanalCluster) -> None:
    rng = random.Random(7)
    sink = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: kills}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: all, namespace: kills}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
""")
        url = cluster.broker_url("kills", "default")
        accepted: set[str] = set()
        attempts = Counter[str]()
        # Kill points: after how many accepted events each component dies (in a random order).
        victims = ["ingress", "dispatcher", "controller", "dispatcher", "ingress"]
        rng.shuffle(victims)
        points = sorted(rng.sample(range(100, EVENTS - 100), len(victims)))
        kills: list[str] = []
        restarted: list[str] = []
        stop_killer = asyncio.Event()

        async def killer() -> None:
            for point, victim in zip(points, victims, strict=True):
                while len(accepted) < point and not stop_killer.is_set():
                    await asyncio.sleep(0.01)
                if stop_killer.is_set():
                    return
                cluster.kill(victim, signal.SIGKILL)
                kills.append(victim)
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                restarted.append(victim)
                await cluster.start(victim)

        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def send(i: int) -> None:
                event_id = f"k{i}"
                headers = {
                    "ce-id": event_id,
                    "ce-specversion": "1.0",
                    "ce-type": "t",
                    "ce-source": "kill-test",
                    "content-type": "application/json",
                }
                for _ in range(200):
                    attempts[event_id] += 1
                    try:
                        async with session.post(url, data=json.dumps({"i": i}), headers=headers) as response:
                            if response.status == 202:
                                accepted.add(event_id)
                                return
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    await asyncio.sleep(0.2)
                raise AssertionError(f"{event_id} was never accepted")

            kill_task = asyncio.create_task(killer())
            try:
                for start in range(0, EVENTS, 25):
                    await asyncio.gather(*(send(i) for i in range(start, min(start + 25, EVENTS))))
                    # Keep sending while a component is down, but do not run past the next kill
                    # point before the killer has struck there.
                    while len(kills) < len(points) and points[len(kills)] <= len(accepted):
                        await asyncio.sleep(0.02)
            finally:
                stop_killer.set()
                await kill_task
        assert len(accepted) == EVENTS
        assert sorted(kills) == sorted(victims)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while accepted - set(sink.ids()) and loop.time() < deadline:  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
        ids = [i for i in sink.ids() if i]
        lost = accepted - set(ids)
        assert not lost, f"{len(lost)} accepted events never delivered: {sorted(lost)[:10]}"
        # Resources survived every kill, the controller's included.
        result = await asyncio.to_thread(cluster.kanal, "get", "triggers", "-n", "kills")
        assert result.returncode == 0 and "all" in result.stdout
        duplicates = len(ids) - len(set(ids))
        summary(
            "process-kills",
            faults="kill -9 " + ", ".join(kills),
            sent=EVENTS,
            accepted=len(accepted),
            sender_retries=sum(attempts.values()) - EVENTS,
            delivered=len(set(ids)),
            lost=len(lost),
            duplicates=duplicates,
        )
    finally:
        await sink.close()
