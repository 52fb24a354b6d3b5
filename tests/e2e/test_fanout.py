"""One read of a Broker's topic for all its Triggers: many Triggers each get exactly their events,
a slow Trigger is read on its own without delaying the others and still gets everything, a
Trigger added while events flow gets the events sent after it, and each Trigger's progress is
its own across a dispatcher restart."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_batch
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

TRIGGER = """
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: fan}}
spec:
  broker: default
  filter: {{attributes: {{type: {type}}}}}
  subscriber: {{uri: "{url}"}}
"""
BROKER = """
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: fan}
"""


@pytest.fixture
def cluster_settings() -> dict[str, str]:
    # A small lane buffer, so that a slow subscriber makes its Trigger fall behind quickly.
    return {"dispatcher_lane_buffer": "16", "dispatcher_max_in_flight": "4"}


async def _send(session: aiohttp.ClientSession, url: str, ids: list[tuple[str, str]]) -> None:
    async def one(event_id: str, event_type: str) -> None:
        headers = {
            "ce-id": event_id,
            "ce-specversion": "1.0",
            "ce-type": event_type,
            "ce-source": "fanout-test",
            "content-type": "application/json",
        }
        async with session.post(url, data=json.dumps({"id": event_id}), headers=headers) as response:
            assert response.status == 202, await response.text()

    for start in range(0, len(ids), 50):
        await asyncio.gather(*(one(i, t) for i, t in ids[start : start + 50]))


def _by_path(sink: RecordingSink) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for request in sink.requests:
        out.setdefault(request.path, []).append(request.header("ce-id"))
    return out


async def test_many_triggers_each_get_exactly_their_events(cluster: KanalCluster) -> None:
    triggers = 40
    sink = await RecordingSink().start()
    try:
        manifest = BROKER + "".join(
            TRIGGER.format(name=f"t{n}", type=f"type-{n}", url=f"{sink.url}t{n}") for n in range(triggers)
        )
        await cluster.apply(manifest)
        events = [(f"e{i}", f"type-{i % triggers}") for i in range(800)]
        async with aiohttp.ClientSession() as session:
            await _send(session, cluster.broker_url("fan", "default"), events)
        await sink.wait_for(len(events), timeout=60)
        await asyncio.sleep(1.0)  # anything extra would have arrived by now
        got = _by_path(sink)
        for n in range(triggers):
            expected = sorted(i for i, t in events if t == f"type-{n}")
            assert sorted(x or "" for x in got[f"/t{n}"]) == expected, f"trigger t{n}"

        # Each Trigger's progress is committed in its own group: after a restart nothing done
        # is delivered again (the dispatcher commits on SIGTERM), and new events still flow.
        cluster.kill("dispatcher", signal.SIGTERM)
        await asyncio.sleep(1.0)
        await cluster.start("dispatcher")
        more = [(f"f{i}", f"type-{i % triggers}") for i in range(80)]
        async with aiohttp.ClientSession() as session:
            await _send(session, cluster.broker_url("fan", "default"), more)
        await sink.wait_for(len(events) + len(more), timeout=60)
        await asyncio.sleep(1.0)
        ids = [r.header("ce-id") for r in sink.requests]
        assert len(ids) == len(set(ids)) == len(events) + len(more)
    finally:
        await sink.close()


async def test_a_slow_trigger_does_not_delay_the_others(cluster: KanalCluster) -> None:
    async def slow(n: int, r: Received) -> web.Response:
        await asyncio.sleep(0.1)
        return web.Response(status=202)

    fast_sink = await RecordingSink().start()
    slow_sink = await RecordingSink(slow).start()
    try:
        await cluster.apply(
            BROKER
            + TRIGGER.format(name="fast", type="x", url=fast_sink.url)
            + TRIGGER.format(name="slow", type="x", url=slow_sink.url)
        )
        events = [(f"e{i}", "x") for i in range(300)]
        await post_batch(cluster.broker_url("fan", "default"), events, "fanout-test")
        # All 300 are in Kafka at once. The slow subscriber takes 4 requests at a time, 0.1 s
        # each, so it needs at least 7.5 s for them; the fast Trigger must not wait for it.
        await fast_sink.wait_for(len(events), timeout=30)
        assert len(slow_sink.requests) < len(events) // 2, len(slow_sink.requests)
        await slow_sink.wait_for(len(events), timeout=60)
        assert sorted(set(slow_sink.ids())) == sorted(i for i, _ in events)
        assert sorted(set(fast_sink.ids())) == sorted(i for i, _ in events)
        # The slow Trigger was read on its own and, once done, came back to the shared reader.
        for _ in range(50):
            log = cluster.tail("dispatcher", 400)
            if "caught up on" in log:
                break
            await asyncio.sleep(0.2)
        assert "is behind on" in log and "caught up on" in log, log
    finally:
        await fast_sink.close()
        await slow_sink.close()


async def test_a_trigger_added_while_events_flow_gets_what_follows(cluster: KanalCluster) -> None:
    first = await RecordingSink().start()
    late = await RecordingSink().start()
    try:
        await cluster.apply(BROKER + TRIGGER.format(name="first", type="x", url=first.url))
        async with aiohttp.ClientSession() as session:
            url = cluster.broker_url("fan", "default")
            await _send(session, url, [(f"before{i}", "x") for i in range(100)])
            await first.wait_for(100)
            # creationTimestamp has whole seconds, as in Kubernetes: leave the second.
            await asyncio.sleep(1.1)
            await cluster.apply(TRIGGER.format(name="late", type="x", url=late.url))
            await _send(session, url, [(f"after{i}", "x") for i in range(100)])
        await first.wait_for(200, timeout=30)
        await late.wait_for(100, timeout=30)
        await asyncio.sleep(1.0)
        assert sorted(set(late.ids())) == sorted(f"after{i}" for i in range(100))
    finally:
        await first.close()
        await late.close()
