"""Replay and dead-letter topics with real processes: `kanal replay` delivers exactly the chosen
range again without disturbing live delivery; a Trigger's dead letters land in its dead-letter
topic, `kanal deadletters list` shows them and `redrive` sends them back to the Broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_batch
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


async def _post_batch(cluster: KanalCluster, events: list[tuple[str, str]], **extensions: str) -> None:
    await post_batch(cluster.broker_url("rp", "default"), events, "replay-test", **extensions)


async def _kanal(cluster: KanalCluster, *args: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(cluster.kanal, *args)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.kafka_compat
async def test_replay_delivers_exactly_the_range_again(cluster: KanalCluster) -> None:
    sink = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: rp}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: xs, namespace: rp}}
spec:
  broker: default
  filter: {{attributes: {{type: x}}}}
  subscriber: {{uri: "{sink.url}"}}
""")
        await _post_batch(cluster, [(f"a{i}", "x") for i in range(20)] + [(f"y{i}", "y") for i in range(5)])
        await sink.wait_for(20)
        await asyncio.sleep(1.1)
        middle = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        await asyncio.sleep(0.1)
        # One partition key: the other partitions get nothing after `middle`, and must add
        # nothing to the replay.
        await _post_batch(cluster, [(f"b{i}", "x") for i in range(10)], partitionkey="one")
        await sink.wait_for(30)

        code, out, err = await _kanal(
            cluster, "replay", "trigger", "xs", "-n", "rp", "--from", middle, "--dry-run"
        )
        assert code == 0, err
        assert "matched 10" in out and "dry run" in out
        await asyncio.sleep(1.0)
        assert len(sink.requests) == 30  # a dry run delivers nothing

        code, out, err = await _kanal(cluster, "replay", "trigger", "xs", "-n", "rp", "--from", middle)
        assert code == 0, err
        assert "matched 10" in out and "delivered 10" in out, out
        assert "replaying" not in err  # no progress line off a terminal
        await sink.wait_for(40)
        counts = Counter(sink.ids())
        assert {i for i, n in counts.items() if n == 2} == {f"b{i}" for i in range(10)}
        assert all(counts[f"a{i}"] == 1 for i in range(20))

        # From offset 0 on every partition: all 30 x events, never the y ones.
        code, out, err = await _kanal(
            cluster, "replay", "trigger", "xs", "-n", "rp", "--from", "0", "--dry-run"
        )
        assert code == 0, err
        assert "read 35" in out and "matched 30" in out, out

        # Live delivery was not disturbed: new events arrive once.
        await _post_batch(cluster, [(f"c{i}", "x") for i in range(5)])
        await sink.wait_for(45)
        await asyncio.sleep(1.0)
        counts = Counter(sink.ids())
        assert all(counts[f"c{i}"] == 1 for i in range(5))
        assert len(sink.requests) == 45

        code, _, err = await _kanal(cluster, "replay", "trigger", "nope", "-n", "rp", "--from", "0")
        assert code == 1 and "nope" in err and "Traceback" not in err
        code, _, err = await _kanal(cluster, "replay", "trigger", "xs", "-n", "rp", "--from", "yesterday")
        assert code == 2 and "RFC 3339" in err
    finally:
        await sink.close()


async def test_dead_letter_topic_list_and_redrive(cluster: KanalCluster) -> None:
    def broken(n: int, r: Received) -> web.Response:
        return web.Response(status=500, text="down for maintenance")

    failing = await RecordingSink(broken).start()
    healthy = await RecordingSink().start()
    topic = f"dead.{uuid.uuid4().hex[:8]}"
    trigger = """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: orders
  namespace: rp
  annotations: {{kanal.dev/dead-letter-topic: {topic}}}
spec:
  broker: default
  filter: {{attributes: {{source: replay-test}}}}
  subscriber: {{uri: "{url}"}}
"""
    try:
        await cluster.apply(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
            "metadata: {name: default, namespace: rp}\n---\n" + trigger.format(topic=topic, url=failing.url)
        )
        events = [(f"o{i}", "order.created" if i % 2 else "order.paid") for i in range(6)]
        await _post_batch(cluster, events)
        await failing.wait_for(6)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        rows: list[str] = []
        while loop.time() < deadline:
            code, out, err = await _kanal(cluster, "deadletters", "list", "--trigger", "orders", "-n", "rp")
            assert code == 0, err
            rows = out.splitlines()[1:]
            if len(rows) == 6:
                break
            await asyncio.sleep(0.5)
        assert len(rows) == 6, rows
        assert all(" 500 " in row for row in rows)
        code, out, _ = await _kanal(
            cluster, "deadletters", "list", "--topic", topic, "--type", "order.paid", "-o", "json"
        )
        listed = json.loads(out)
        assert sorted(d["attributes"]["id"] for d in listed) == ["o0", "o2", "o4"]
        assert all(d["attributes"]["kanalorigin"] == "Trigger/rp/orders" for d in listed)
        assert all(d["attributes"]["knativeerrordest"] == failing.url for d in listed)

        # The subscriber is fixed; the dead letters go back.
        await cluster.apply(trigger.format(topic=topic, url=healthy.url))
        code, out, err = await _kanal(
            cluster, "deadletters", "redrive", "--trigger", "orders", "-n", "rp", "--dry-run"
        )
        assert code == 0, err
        assert "6 dead letters would be sent" in out
        await asyncio.sleep(1.5)
        assert healthy.requests == []
        code, out, err = await _kanal(cluster, "deadletters", "redrive", "--trigger", "orders", "-n", "rp")
        assert code == 0, err
        received = await healthy.wait_for(6, timeout=30)
        assert sorted(r.header("ce-id") or "" for r in received) == sorted(i for i, _ in events)
        for r in received:
            assert r.header("ce-knativeerrorcode") is None and r.header("ce-kanalorigin") is None
        code, _, err = await _kanal(cluster, "deadletters", "list", "--trigger", "nope", "-n", "rp")
        assert code == 1 and "nope" in err
    finally:
        await failing.close()
        await healthy.close()
