"""Soak: a steady rate for a long time (10 minutes by default) with a flaky subscriber; memory of
the ingress and dispatcher and the Trigger's backlog stay flat. Opt-in: `pytest -m soak`
(KANAL_SOAK_SECONDS and KANAL_SOAK_RATE change the duration and the rate)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.report import summary
from support.sinks import Received, RecordingSink

DURATION = float(os.environ.get("KANAL_SOAK_SECONDS", "600"))
RATE = int(os.environ.get("KANAL_SOAK_RATE", "200"))

pytestmark = [
    pytest.mark.soak,
    pytest.mark.reliability,
    pytest.mark.e2e,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.timeout(DURATION + 300),
]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _lag(url: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(v)
        for v in re.findall(r'^kanal_dispatcher_consumer_lag\{[^}]*trigger="flaky"[^}]*\} (\S+)$', text, re.M)
    )


def _flat(samples: list[float], slack: float) -> bool:
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    return max(last) <= max(first) * (1 + slack) + 5


async def test_soak(cluster: KanalCluster) -> None:
    rng = random.Random(3)

    def flaky(n: int, r: Received) -> web.Response:
        return web.Response(status=503 if rng.random() < 0.1 else 202)

    sink = await RecordingSink(flaky).start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: soak}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: flaky, namespace: soak}}
spec:
  broker: default
  subscriber: {{uri: "{sink.url}"}}
  delivery: {{retry: 5, backoffPolicy: linear, backoffDelay: PT0.05S}}
""")
        url = cluster.broker_url("soak", "default")
        metrics = f"http://127.0.0.1:{cluster.ports['dispatcher']}/metrics"
        pids = {name: cluster.processes[name].pid for name in ("ingress", "dispatcher")}
        samples: dict[str, list[float]] = {"ingress": [], "dispatcher": [], "lag": []}
        sent = 0
        started = time.monotonic()
        next_sample = started
        async with aiohttp.ClientSession() as session:
            while time.monotonic() - started < DURATION:
                tick = time.monotonic()
                batch = []
                for _ in range(max(1, RATE // 10)):
                    headers = {
                        "ce-id": f"s{sent}",
                        "ce-specversion": "1.0",
                        "ce-type": "t",
                        "ce-source": "soak",
                        "content-type": "application/json",
                    }
                    batch.append(session.post(url, data=b'{"soak": true}', headers=headers))
                    sent += 1
                for response in await asyncio.gather(*batch):
                    assert response.status == 202
                    response.release()
                if tick >= next_sample:
                    for name, pid in pids.items():
                        samples[name].append(_rss_mib(pid))
                    samples["lag"].append(await asyncio.to_thread(_lag, metrics))
                    next_sample = tick + max(5.0, DURATION / 20)
                await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while len(set(sink.ids())) < sent and loop.time() < deadline:
            await asyncio.sleep(0.5)
        delivered = len({i for i, r in zip(sink.ids(), sink.requests, strict=True) if i})
        summary(
            "soak",
            faults=f"{DURATION:.0f} s at {RATE}/s, subscriber failing 10%",
            sent=sent,
            delivered=delivered,
            lost=sent - delivered,
            ingress_rss_mib=f"{samples['ingress'][0]:.0f}->{samples['ingress'][-1]:.0f}",
            dispatcher_rss_mib=f"{samples['dispatcher'][0]:.0f}->{samples['dispatcher'][-1]:.0f}",
            max_lag=max(samples["lag"]),
        )
        assert delivered == sent
        assert _flat(samples["ingress"], 0.2), samples["ingress"]
        assert _flat(samples["dispatcher"], 0.2), samples["dispatcher"]
        # The backlog never exceeds two seconds of events: the subscriber keeps up, retries included.
        assert max(samples["lag"]) <= 2 * RATE, samples["lag"]
    finally:
        await sink.close()
