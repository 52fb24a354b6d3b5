"""W3C Trace Context end to end (ING-19): the `traceparent` a sender posts with reaches every
HTTP request Kanal makes for that event, through a Broker and through a Channel, on a reply, to
a dead-letter sink, and again after the dead letter is redriven from its topic. Real processes,
real sinks."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.events import post_event
from support.sinks import Received, RecordingSink, reply_event

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def _traceparent() -> tuple[str, str]:
    """A traceparent header of a new trace, and its trace id."""
    trace_id = uuid.uuid4().hex
    return f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01", trace_id


def _trace_id(request: Received) -> str | None:
    header = request.header("traceparent")
    return header.split("-")[1] if header else None


async def _post(url: str, event_id: str, event_type: str, traceparent: str) -> None:
    await post_event(url, event_id, event_type, "tracing-test", traceparent=traceparent)


def _reply_with_next(n: int, request: Received) -> web.Response:
    return reply_event(f"next-{request.header('ce-id')}", "next", b'{"step":2}')


async def test_traceparent_reaches_every_request_made_for_the_event(cluster: KanalCluster) -> None:
    replier = await RecordingSink(_reply_with_next).start()
    after_reply = await RecordingSink().start()
    refusing = await RecordingSink(lambda n, r: web.Response(status=400)).start()
    dead_letters = await RecordingSink().start()
    subscription = await RecordingSink().start()
    topic = f"dead.{uuid.uuid4().hex[:8]}"
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: tr}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: replies, namespace: tr}}
spec:
  broker: default
  filter: {{attributes: {{type: start}}}}
  subscriber: {{uri: "{replier.url}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: next, namespace: tr}}
spec:
  broker: default
  filter: {{attributes: {{type: next}}}}
  subscriber: {{uri: "{after_reply.url}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: doomed
  namespace: tr
  annotations: {{kanal.dev/dead-letter-topic: {topic}}}
spec:
  broker: default
  filter: {{attributes: {{type: doomed}}}}
  subscriber: {{uri: "{refusing.url}"}}
  delivery: {{deadLetterSink: {{uri: "{dead_letters.url}"}}}}
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: orders, namespace: tr}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: s, namespace: tr}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: orders}}
  subscriber: {{uri: "{subscription.url}"}}
""")
        started, started_id = _traceparent()
        doomed, doomed_id = _traceparent()
        channelled, channelled_id = _traceparent()
        await _post(cluster.broker_url("tr", "default"), "e1", "start", started)
        await _post(cluster.broker_url("tr", "default"), "e2", "doomed", doomed)
        await _post(f"{cluster.ingress_url}/channels/tr/orders", "e3", "order", channelled)

        [delivered] = await replier.wait_for(1)
        assert delivered.header("traceparent") == started  # as sent: Kanal adds no span of its own
        [reply] = await after_reply.wait_for(1)
        assert reply.header("ce-id") == "next-e1" and _trace_id(reply) == started_id
        [refused] = await refusing.wait_for(1)
        assert _trace_id(refused) == doomed_id
        [dead] = await dead_letters.wait_for(1)
        assert dead.header("ce-id") == "e2" and _trace_id(dead) == doomed_id
        [ordered] = await subscription.wait_for(1)
        assert ordered.header("ce-id") == "e3" and _trace_id(ordered) == channelled_id

        # The dead letter's record kept the trace: redriven, the event is in it again.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            listed = await asyncio.to_thread(
                cluster.kanal, "deadletters", "list", "--trigger", "doomed", "-n", "tr"
            )
            assert listed.returncode == 0, listed.stderr
            if len(listed.stdout.splitlines()) == 2 or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
        redriven = await asyncio.to_thread(
            cluster.kanal, "deadletters", "redrive", "--trigger", "doomed", "-n", "tr"
        )
        assert redriven.returncode == 0, redriven.stderr
        await refusing.wait_for(2)
        assert refusing.requests[1].header("ce-id") == "e2" and _trace_id(refusing.requests[1]) == doomed_id
    finally:
        for sink in (replier, after_reply, refusing, dead_letters, subscription):
            await sink.close()
