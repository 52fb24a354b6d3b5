"""kill -9 of the ingress, the dispatcher and the controller at random points while events flow
(seeded, bounded): resources survive, every event that got a 202 is delivered, duplicates are
counted. Sends that fail while the ingress is down are retried by the sender, as a Source does."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from collections import Counter

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.inventory import inventory
from support.report import summary
from support.sinks import RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

EVENTS = 1500
# The kill points, victims and downtimes follow from this seed (override to explore others).
SEED = int(os.environ.get("KANAL_RELIABILITY_SEED", "7"))


@pytest.mark.timeout(240)
async def test_kill_every_component_under_load(cluster: KanalCluster) -> None:
    rng = random.Random(SEED)
    sink = await RecordingSink().start()
    odd = await RecordingSink().start()
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
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: odd, namespace: kills}}
spec:
  broker: default
  filter: {{attributes: {{type: odd}}}}
  subscriber: {{uri: "{odd.url}"}}
""")
        resources_before = await inventory(cluster)
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
        kill_times: list[float] = []
        loop = asyncio.get_running_loop()

        async def killer() -> None:
            for point, victim in zip(points, victims, strict=True):
                while len(accepted) < point and not stop_killer.is_set():
                    await asyncio.sleep(0.01)
                if stop_killer.is_set():
                    return
                # Somewhere in the deliveries and offset commits of the events just accepted.
                await asyncio.sleep(rng.uniform(0.0, 0.4))
                cluster.kill(victim, signal.SIGKILL)
                kills.append(victim)
                kill_times.append(loop.time())
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
                    "ce-type": "odd" if i % 2 else "even",
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

            async with asyncio.TaskGroup() as tg:
                tg.create_task(killer())
                try:
                    for start in range(0, EVENTS, 25):
                        await asyncio.gather(*(send(i) for i in range(start, min(start + 25, EVENTS))))
                        # Keep sending while a component is down, but do not run past the next
                        # kill point before the killer has struck there.
                        while len(kills) < len(points) and points[len(kills)] <= len(accepted):
                            await asyncio.sleep(0.02)
                finally:
                    stop_killer.set()
        assert len(accepted) == EVENTS
        assert sorted(kills) == sorted(victims)

        accepted_odd = {i for i in accepted if int(i[1:]) % 2}

        def undelivered() -> set[str]:
            return (accepted - {i for i in sink.ids() if i}) | (accepted_odd - {i for i in odd.ids() if i})

        deadline = loop.time() + 90
        while undelivered() and loop.time() < deadline:
            await asyncio.sleep(0.5)
        lost = undelivered()
        # Resources survived every kill, the controller's included: same names, same uids.
        resources_after = await inventory(cluster)
        counts = Counter([("all", i) for i in sink.ids() if i] + [("odd", i) for i in odd.ids() if i])
        duplicates = {key: n for key, n in counts.items() if n > 1}
        print(f"\nseed {SEED}: kill -9 at accepted counts {points}: {kills}")
        print(f"duplicates ({len(duplicates)} events): {sorted(duplicates.items())[:30]}")
        # Which kill each second copy followed (the sink clock is the test's loop clock), and
        # which events were sent again: a window far larger than the commit interval means
        # committed offsets lagged far behind the deliveries.
        after_kill: Counter[str] = Counter()
        for name, recording in (("all", sink), ("odd", odd)):
            seen: set[str | None] = set()
            again: list[tuple[float, int]] = []
            for r in recording.requests:
                if r.header("ce-id") in seen:
                    before = [t for t in kill_times if t <= r.at]
                    after_kill[f"{name} after kill #{len(before)} ({kills[len(before) - 1]})"] += 1
                    again.append((r.at - before[-1], int((r.header("ce-id") or "k0")[1:])))
                seen.add(r.header("ce-id"))
            if again:
                print(
                    f"{name}: {len(again)} second copies, {min(a[0] for a in again):.1f}-"
                    f"{max(a[0] for a in again):.1f}s after the last kill, "
                    f"events k{min(a[1] for a in again)}..k{max(a[1] for a in again)}"
                )
        print(f"second copies by the kill they followed: {dict(after_kill)}")
        summary(
            "process-kills",
            faults="kill -9 " + ", ".join(kills),
            sent=EVENTS,
            accepted=len(accepted),
            sender_retries=sum(attempts.values()) - EVENTS,
            expected_deliveries=len(accepted) + len(accepted_odd),
            delivered=len(counts),
            dead_lettered=0,
            lost=len(lost),
            duplicates=sum(n - 1 for n in duplicates.values()),
        )
        assert not lost, f"{len(lost)} accepted events never delivered: {sorted(lost)[:10]}"
        assert not (odd.ids() and set(odd.ids()) - accepted_odd), "the filter let other events through"
        assert resources_after == resources_before
    finally:
        await sink.close()
        await odd.close()
