"""Subscribers that misbehave, side by side on one Broker: slow (5 s), flapping, always failing,
answering garbage. None affects the healthy Trigger, and the retry and dead-letter accounting is
exact: attempts = retry + 1 for every event that keeps failing, one dead letter each."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_batch
from support.report import summary
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

EVENTS = 20


def _trigger(name: str, url: str, delivery: str = "") -> str:
    return f"""
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: faults}}
spec:
  broker: default
  subscriber: {{uri: "{url}"}}
  {delivery}
"""


async def test_misbehaving_subscribers(cluster: KanalCluster) -> None:
    slow_answered: list[float] = []

    async def slow(n: int, r: Received) -> web.Response:
        await asyncio.sleep(5)
        slow_answered.append(asyncio.get_running_loop().time())
        return web.Response(status=202)

    flapping_ok: list[str | None] = []
    flapping_seen: Counter[str | None] = Counter()

    def flapping(n: int, r: Received) -> web.Response:
        # Down, up, down, up ... for each event: its first attempt fails, its second succeeds.
        flapping_seen[r.header("ce-id")] += 1
        if flapping_seen[r.header("ce-id")] % 2:
            return web.Response(status=503, headers={"Retry-After": "0"})
        flapping_ok.append(r.header("ce-id"))
        return web.Response(status=202)

    def failing(n: int, r: Received) -> web.Response:
        return web.Response(status=500, text="always broken")

    def garbage(n: int, r: Received) -> web.Response:
        # Claims to be a CloudEvent reply (binary mode) but lacks id, source and type.
        return web.Response(status=200, body=b"\x00\xff", headers={"ce-specversion": "1.0"})

    sinks = {
        "healthy": await RecordingSink().start(),
        "slow": await RecordingSink(slow).start(),
        "flapping": await RecordingSink(flapping).start(),
        "failing": await RecordingSink(failing).start(),
        "garbage": await RecordingSink(garbage).start(),
        "dls-failing": await RecordingSink().start(),
        "dls-garbage": await RecordingSink().start(),
    }
    try:
        fast_retry = "backoffPolicy: linear, backoffDelay: PT0.05S"
        dls_failing, dls_garbage = sinks["dls-failing"].url, sinks["dls-garbage"].url
        manifest = (
            """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: faults}
"""
            + _trigger("healthy", sinks["healthy"].url)
            + _trigger("slow", sinks["slow"].url, "delivery: {timeout: PT10S}")
            + _trigger("flapping", sinks["flapping"].url, f"delivery: {{retry: 3, {fast_retry}}}")
            + _trigger(
                "failing",
                sinks["failing"].url,
                f'delivery: {{retry: 2, {fast_retry}, deadLetterSink: {{uri: "{dls_failing}"}}}}',
            )
            + _trigger(
                "garbage",
                sinks["garbage"].url,
                f'delivery: {{retry: 1, {fast_retry}, deadLetterSink: {{uri: "{dls_garbage}"}}}}',
            )
        )
        await cluster.apply(manifest)
        events = [(f"f{i}", "t") for i in range(EVENTS)]
        ids = sorted(await post_batch(cluster.broker_url("faults", "default"), events, "faults"))

        await sinks["healthy"].wait_for(EVENTS, timeout=20)
        assert not slow_answered, "the healthy Trigger waited for the slow subscriber"
        assert sorted(sinks["healthy"].ids()) == ids  # type: ignore[type-var]

        await sinks["dls-failing"].wait_for(EVENTS, timeout=60)
        await sinks["dls-garbage"].wait_for(EVENTS, timeout=60)
        await sinks["slow"].wait_for(EVENTS, timeout=60)
        await sinks["flapping"].wait_for(2 * EVENTS, timeout=60)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(slow_answered) < EVENTS and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything extra would have arrived by now

        # Always failing: exactly retry + 1 = 3 attempts each, then one dead letter each.
        assert Counter(sinks["failing"].ids()) == dict.fromkeys(ids, 3)
        dead = sinks["dls-failing"].requests
        assert sorted(r.header("ce-id") or "" for r in dead) == ids
        for r in dead:
            assert r.header("ce-knativeerrorcode") == "500"
            assert r.header("ce-knativeerrordest") == sinks["failing"].url
        # Garbage replies are failures: retry + 1 = 2 attempts, dead letter names the code.
        assert Counter(sinks["garbage"].ids()) == dict.fromkeys(ids, 2)
        for r in sinks["dls-garbage"].requests:
            assert r.header("ce-knativeerrorcode") == "200"
        assert sorted(r.header("ce-id") or "" for r in sinks["dls-garbage"].requests) == ids
        # Flapping: every event accepted exactly once, on its second attempt.
        assert sorted(i or "" for i in flapping_ok) == ids
        assert Counter(sinks["flapping"].ids()) == dict.fromkeys(ids, 2)
        # Slow: all delivered, once each (the timeout is longer than the subscriber).
        assert Counter(sinks["slow"].ids()) == dict.fromkeys(ids, 1)
        assert len(slow_answered) == EVENTS
        summary(
            "subscriber-faults",
            faults="slow 5 s, flapping 503, always 500, garbage reply",
            sent=EVENTS,
            delivered=EVENTS * 3,  # healthy, slow, flapping
            dead_lettered=EVENTS * 2,
            lost=0,
            duplicates=0,
        )
    finally:
        for sink in sinks.values():
            await sink.close()
