"""Subscribers that misbehave, side by side on one Broker: slow (5 s), flapping, always failing,
answering garbage. None affects the healthy Trigger, and the retry and dead-letter accounting is
exact: attempts = retry + 1 for every event that keeps failing, one dead letter each.

The dispatcher runs with 8 deliveries in flight per Trigger, so the slow Trigger (5 s each) has a
backlog for about 25 s; a second wave of events sent while it is backed up must still reach the
healthy Trigger at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_batch
from support.report import summary
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

WAVE = 20
EVENTS = 2 * WAVE
IN_FLIGHT = 8
# A new Trigger's first delivery waits for a consumer-group join (half the 4 s session timeout
# on the embedded broker); after that, a healthy subscriber gets an event within a fetch.
FIRST_WAVE_WITHIN = 10.0
PROMPT = 2.0


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    return {"dispatcher_max_in_flight": str(IN_FLIGHT)}


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
        slow_answered.append(time.monotonic())
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
        # Claims to be a CloudEvent reply but is not one (RPL-04): in binary mode without id,
        # source and type; in structured mode a body that is not JSON.
        if n % 2:
            return web.Response(status=200, body=b"\x00\xff", headers={"ce-specversion": "1.0"})
        return web.Response(
            status=200, body=b'{"specversion": "1.0", "id": ', content_type="application/cloudevents+json"
        )

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
        url = cluster.broker_url("faults", "default")
        first = sorted(await post_batch(url, [(f"f{i}", "t") for i in range(WAVE)], "faults"))
        first_sent = time.monotonic()
        await sinks["healthy"].wait_for(WAVE, timeout=30)
        first_took = max(r.at for r in sinks["healthy"].requests) - first_sent
        # The slow Trigger is now backed up: 8 in flight, 12 waiting, 5 s each.
        await sinks["slow"].wait_for(1, timeout=30)
        second = sorted(await post_batch(url, [(f"g{i}", "t") for i in range(WAVE)], "faults"))
        second_sent = time.monotonic()
        await sinks["healthy"].wait_for(EVENTS, timeout=30)
        second_arrivals = [r.at for r in sinks["healthy"].requests if (r.header("ce-id") or "")[0] == "g"]
        second_took = max(second_arrivals) - second_sent
        slow_done_when_healthy_done = len(slow_answered)
        ids = sorted(first + second)
        assert sorted(sinks["healthy"].ids()) == ids  # type: ignore[type-var]

        await sinks["dls-failing"].wait_for(EVENTS, timeout=60)
        await sinks["dls-garbage"].wait_for(EVENTS, timeout=60)
        await sinks["flapping"].wait_for(2 * EVENTS, timeout=60)
        await sinks["slow"].wait_for(EVENTS, timeout=60)
        deadline = time.monotonic() + 30
        while len(slow_answered) < EVENTS and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything extra would have arrived by now
        slow_took = max(slow_answered) - first_sent
        print(
            f"\nhealthy: first wave within {first_took:.2f}s, second wave within {second_took:.2f}s "
            f"(when the slow subscriber had answered {slow_done_when_healthy_done} of {EVENTS}); "
            f"slow: all {len(slow_answered)} answered after {slow_took:.1f}s"
        )

        # Healthy: prompt, and never behind the slow Trigger's backlog.
        assert first_took < FIRST_WAVE_WITHIN, first_took
        assert second_took < PROMPT, second_took
        assert slow_done_when_healthy_done < EVENTS, "the slow Trigger was never backed up"
        # Always failing: exactly retry + 1 = 3 attempts each, then one dead letter each.
        assert Counter(sinks["failing"].ids()) == dict.fromkeys(ids, 3)
        dead = sinks["dls-failing"].requests
        assert Counter(r.header("ce-id") for r in dead) == dict.fromkeys(ids, 1)
        for r in dead:
            assert r.header("ce-knativeerrorcode") == "500"
            assert r.header("ce-knativeerrordest") == sinks["failing"].url
        # Garbage replies are failures: retry + 1 = 2 attempts, dead letter names the code.
        assert Counter(sinks["garbage"].ids()) == dict.fromkeys(ids, 2)
        dead_garbage = sinks["dls-garbage"].requests
        assert Counter(r.header("ce-id") for r in dead_garbage) == dict.fromkeys(ids, 1)
        for r in dead_garbage:
            assert r.header("ce-knativeerrorcode") == "200"
        # Flapping: every event accepted exactly once, on its second attempt.
        assert Counter(flapping_ok) == dict.fromkeys(ids, 1)
        assert Counter(sinks["flapping"].ids()) == dict.fromkeys(ids, 2)
        # Slow: all delivered, once each (the timeout is longer than the subscriber).
        assert Counter(sinks["slow"].ids()) == dict.fromkeys(ids, 1)
        assert len(slow_answered) == EVENTS
        summary(
            "subscriber-faults",
            faults="slow 5 s, flapping 503, always 500 (retry 2), garbage reply (retry 1)",
            sent=EVENTS,
            delivered=EVENTS * 3,  # healthy, slow, flapping
            dead_lettered=len(dead) + len(dead_garbage),
            lost=0,
            duplicates=0,
            healthy_second_wave_s=round(second_took, 2),
            slow_all_s=round(slow_took, 1),
        )
    finally:
        for sink in sinks.values():
            await sink.close()
