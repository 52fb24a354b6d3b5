"""Soak: a steady rate for a long time (10 minutes by default) with a flaky subscriber; memory of
the ingress and dispatcher and the Trigger's backlog stay flat (last third of the samples against
the first third). Opt-in: `pytest -m soak` or KANAL_SOAK=1 (the reliability conftest deselects it
otherwise). KANAL_SOAK_SECONDS, KANAL_SOAK_RATE and KANAL_SOAK_SAMPLE_SECONDS change the duration,
the rate and the sampling interval (30 s, or a tenth of a shorter run).

The backlog is the dispatcher's `kanal_dispatcher_consumer_lag` gauge for the Trigger when it
reports anything; while it is absent or stays zero, it is computed as accepted minus delivered
(dead letters included).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
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
SAMPLE_EVERY = float(os.environ.get("KANAL_SOAK_SAMPLE_SECONDS", str(min(30.0, DURATION / 10))))

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


def _gauge_lag(url: str) -> float | None:
    """The Trigger's lag summed over partitions, or None when the gauge has no sample for it."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values = re.findall(
        r'^kanal_dispatcher_consumer_lag\{[^}]*trigger="flaky"[^}]*\} (\S+)$', text, re.MULTILINE
    )
    return sum(float(v) for v in values) if values else None


def _flat(samples: list[float], slack: float, floor: float) -> bool:
    """The mean of the last third is within `slack` (relative) plus `floor` (absolute) of the
    mean of the first third."""
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    return statistics.fmean(last) <= statistics.fmean(first) * (1 + slack) + floor


async def test_soak(cluster: KanalCluster) -> None:
    rng = random.Random(3)

    accepted_by_sink: list[str | None] = []

    def flaky(n: int, r: Received) -> web.Response:
        if rng.random() < 0.1:
            return web.Response(status=503)
        accepted_by_sink.append(r.header("ce-id"))
        return web.Response(status=202)

    sink = await RecordingSink(flaky).start()
    dead = await RecordingSink().start()
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
  delivery: {{retry: 5, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetterSink: {{uri: "{dead.url}"}}}}
""")
        url = cluster.broker_url("soak", "default")
        metrics = f"http://127.0.0.1:{cluster.ports['dispatcher']}/metrics"
        pids = {name: cluster.processes[name].pid for name in ("ingress", "dispatcher")}
        samples: dict[str, list[float]] = {"ingress": [], "dispatcher": [], "gauge": [], "backlog": []}
        gauge_seen = False

        def take_sample() -> None:
            nonlocal gauge_seen
            for name, pid in pids.items():
                samples[name].append(_rss_mib(pid))
            samples["backlog"].append(sent - len(set(accepted_by_sink)) - len(dead.requests))
            gauge = _gauge_lag(metrics)
            gauge_seen = gauge_seen or bool(gauge)
            samples["gauge"].append(gauge or 0.0)

        sent = 0
        started = time.monotonic()
        next_sample = started + SAMPLE_EVERY
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
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
                    take_sample()
                    next_sample += SAMPLE_EVERY
                await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        elapsed = time.monotonic() - started
        take_sample()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while len(set(accepted_by_sink)) + len(dead.requests) < sent and loop.time() < deadline:
            await asyncio.sleep(0.5)
        delivered = len(set(accepted_by_sink))
        dead_lettered = len(dead.requests)
        duplicates = len(accepted_by_sink) - delivered
        lost = sent - delivered - dead_lettered
        lag = samples["gauge"] if gauge_seen else samples["backlog"]
        summary(
            "soak",
            faults=f"{elapsed:.0f} s at {RATE}/s, subscriber failing 10% (retry 5)",
            sent=sent,
            delivered=delivered,
            dead_lettered=dead_lettered,
            lost=lost,
            duplicates=duplicates,
            samples=len(samples["ingress"]),
            ingress_rss_mib=f"{samples['ingress'][0]:.0f}->{samples['ingress'][-1]:.0f}",
            dispatcher_rss_mib=f"{samples['dispatcher'][0]:.0f}->{samples['dispatcher'][-1]:.0f}",
            lag_source="gauge" if gauge_seen else "sent-delivered",
            lag=[round(v) for v in lag],
        )
        assert lost == 0
        assert len(samples["ingress"]) >= 3, "too few samples: raise KANAL_SOAK_SECONDS"
        assert _flat(samples["ingress"], 0.2, 10), samples["ingress"]
        assert _flat(samples["dispatcher"], 0.2, 10), samples["dispatcher"]
        # Backlog: flat, and never more than two seconds of events (retries included).
        assert _flat(lag, 0.5, RATE / 2), lag
        assert max(lag) <= 2 * RATE, lag
    finally:
        await sink.close()
        await dead.close()
