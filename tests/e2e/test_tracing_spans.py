"""OpenTelemetry spans end to end: real Kanal processes export over OTLP/HTTP to a real Jaeger
(tests/support/jaeger.py), and one event is followed from its sender's span to the subscriber's
requests and to its dead letter; another to its reply's delivery. The trees are read back from
Jaeger's query API.

Without a Jaeger and the Go to build it, the module is skipped here with one line; under CI it
fails saying why.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pytest
from aiohttp import web

from channel.tracecontext import parse
from support import jaeger
from support.cluster import KanalCluster
from support.events import post_event
from support.jaeger import Jaeger, Span
from support.polling import until
from support.sinks import Received, RecordingSink, reply_event

if (_WHY := jaeger.unavailable()) is not None and not os.environ.get("CI"):
    pytest.skip(_WHY, allow_module_level=True)

# The first run builds Jaeger (minutes); later ones find it built and keep the usual bound.
_TIMEOUT = 120 if jaeger.built() else 1920
pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(_TIMEOUT)]

RETRIES = 2


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jaeger]:
    running = Jaeger(tmp_path_factory.mktemp("jaeger"))
    try:
        running.start()
    except jaeger.JaegerUnavailable as exc:
        pytest.fail(f"CI traces into Jaeger, but {exc}" if os.environ.get("CI") else str(exc))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cluster_settings(collector: Jaeger) -> dict[str, str]:
    # Sampling 0: the traces followed here are kept because their senders sampled them.
    return {
        "tracing_endpoint": collector.otlp_url,
        "tracing_sampling_ratio": "0",
        "tracing_export_interval": "0.2",
    }


def _sender() -> tuple[str, str, str]:
    """A sampled traceparent of a new trace: the header, its trace id and the sender's span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _parent_id(request: Received, trace_id: str) -> str:
    """The span the request's traceparent names (in trace `trace_id`), in Jaeger's hex."""
    parsed = parse(request.header("traceparent"))
    assert parsed is not None and f"{parsed.trace_id:032x}" == trace_id, request.header("traceparent")
    return f"{parsed.span_id:016x}"


async def _spans(collector: Jaeger, trace_id: str, count: int) -> list[Span]:
    """Trace `trace_id` once Jaeger holds `count` spans of it."""
    found: list[Span] = []

    def check() -> tuple[bool, str]:
        found[:] = collector.trace(trace_id)
        return len(found) >= count, "\n".join(f"{s.service} {s.name} {s.tags}" for s in found)

    await until(check, f"{count} spans of trace {trace_id} in Jaeger", timeout=30)
    return found


def _named(spans: list[Span], name: str) -> list[Span]:
    return [span for span in spans if span.name == name]


def _assert_received(spans: list[Span], sender_span: str) -> None:
    """The ingress's two spans: its server span, child of the sender's, and the Kafka write."""
    [receive] = _named(spans, "receive")
    assert (receive.service, receive.kind, receive.parent) == ("kanal-ingress", "server", sender_span)
    assert receive.tags["http.response.status_code"] == 202
    [write] = [span for span in spans if span.name.startswith("send ")]
    assert (write.kind, write.parent, write.tags["messaging.system"]) == (
        "producer",
        receive.span_id,
        "kafka",
    )


async def test_one_event_from_its_sender_to_each_attempt_and_its_dead_letter(
    cluster: KanalCluster, collector: Jaeger
) -> None:
    failing = await RecordingSink(lambda n, r: web.Response(status=500)).start()
    dead_letters = await RecordingSink().start()
    replier = await RecordingSink(lambda n, r: reply_event(f"next-{r.header('ce-id')}", "next")).start()
    after_reply = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: tr}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: doomed, namespace: tr}}
spec:
  broker: default
  filter: {{attributes: {{type: doomed}}}}
  subscriber: {{uri: "{failing.url}"}}
  delivery:
    retry: {RETRIES}
    backoffPolicy: linear
    backoffDelay: PT0.1S
    deadLetterSink: {{uri: "{dead_letters.url}"}}
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
""")
        doomed, doomed_trace, doomed_sender = _sender()
        started, started_trace, started_sender = _sender()
        await post_event(cluster.broker_url("tr", "default"), "e1", "doomed", "tracing", traceparent=doomed)
        await post_event(cluster.broker_url("tr", "default"), "e2", "start", "tracing", traceparent=started)
        tries = await failing.wait_for(1 + RETRIES)
        [dead] = await dead_letters.wait_for(1)
        [next_event] = await after_reply.wait_for(1)

        # The failed event: receive and write, one attempt per try, the dead letter.
        spans = await _spans(collector, doomed_trace, 2 + (1 + RETRIES) + 1)
        _assert_received(spans, doomed_sender)
        attempts = _named(spans, "deliver")
        assert [a.tags["kanal.retry"] for a in attempts] == list(range(1 + RETRIES))
        for attempt, request in zip(attempts, tries, strict=True):
            assert (attempt.service, attempt.kind, attempt.parent) == (
                "kanal-dispatcher",
                "client",
                doomed_sender,
            )
            assert (
                attempt.tags["kanal.trigger"] == "tr/doomed"
                and attempt.tags["http.response.status_code"] == 500
            )
            assert _parent_id(request, doomed_trace) == attempt.span_id  # the subscriber's parent
        [dead_letter] = _named(spans, "dead letter")
        assert (dead_letter.kind, dead_letter.parent) == ("client", doomed_sender)
        assert dead_letter.links == (attempts[-1].span_id,)
        assert dead_letter.tags["http.response.status_code"] == 202
        assert _parent_id(dead, doomed_trace) == dead_letter.span_id

        # The replied event: its attempt, the reply linked to it, and the reply's own delivery,
        # in the same trace (the stored reply keeps the sender's context).
        spans = await _spans(collector, started_trace, 2 + 1 + 1 + 1)
        _assert_received(spans, started_sender)
        [first, second] = _named(spans, "deliver")
        assert (first.tags["kanal.trigger"], first.tags["http.response.status_code"]) == ("tr/replies", 200)
        [reply] = _named(spans, "reply")
        assert (reply.kind, reply.parent, reply.links) == ("producer", started_sender, (first.span_id,))
        assert (second.tags["kanal.trigger"], second.parent) == ("tr/next", started_sender)
        assert next_event.header("ce-id") == "next-e2"
        assert _parent_id(next_event, started_trace) == second.span_id
    finally:
        for sink in (failing, dead_letters, replier, after_reply):
            await sink.close()


async def test_a_redriven_dead_letter_and_a_replayed_event_join_their_senders_traces(
    cluster: KanalCluster, collector: Jaeger
) -> None:
    failing = await RecordingSink(lambda n, r: web.Response(status=500)).start()
    plain = await RecordingSink().start()
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: rd}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: doomed
  namespace: rd
  annotations: {{kanal.dev/dead-letter-topic: dead.{secrets.token_hex(4)}}}
spec:
  broker: default
  filter: {{attributes: {{type: doomed}}}}
  subscriber: {{uri: "{failing.url}"}}
  delivery: {{retry: 1, backoffPolicy: linear, backoffDelay: PT0.1S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: plain, namespace: rd}}
spec:
  broker: default
  filter: {{attributes: {{type: plain}}}}
  subscriber: {{uri: "{plain.url}"}}
""")
        doomed, doomed_trace, doomed_sender = _sender()
        replayed, replayed_trace, replayed_sender = _sender()
        await post_event(cluster.broker_url("rd", "default"), "e1", "doomed", "tracing", traceparent=doomed)
        await post_event(cluster.broker_url("rd", "default"), "e2", "plain", "tracing", traceparent=replayed)
        await failing.wait_for(2)
        await plain.wait_for(1)

        def listed() -> tuple[bool, str]:
            out = cluster.kanal("deadletters", "list", "--trigger", "doomed", "-n", "rd")
            return out.returncode == 0 and len(out.stdout.splitlines()) == 2, out.stdout + out.stderr

        await until(listed, "the dead letter of e1 in kanal deadletters list")
        redriven = await asyncio.to_thread(
            cluster.kanal, "deadletters", "redrive", "--trigger", "doomed", "-n", "rd"
        )
        assert redriven.returncode == 0, redriven.stderr
        tries = await failing.wait_for(4)
        replay = await asyncio.to_thread(
            cluster.kanal, "replay", "trigger", "plain", "-n", "rd", "--from", "0"
        )
        assert replay.returncode == 0, replay.stderr
        [_, again] = await plain.wait_for(2)

        # Redriven, the event is delivered (and dead-lettered) again in its sender's trace.
        spans = await _spans(collector, doomed_trace, 2 + 2 * (2 + 1))
        _assert_received(spans, doomed_sender)
        attempts = _named(spans, "deliver")
        assert [a.tags["kanal.retry"] for a in attempts] == [0, 1, 0, 1]
        assert {a.parent for a in attempts} == {doomed_sender}
        assert [_parent_id(request, doomed_trace) for request in tries] == [a.span_id for a in attempts]
        written = _named(spans, "dead letter")
        assert [(d.kind, d.parent) for d in written] == [("producer", doomed_sender)] * 2
        assert [d.links for d in written] == [(attempts[1].span_id,), (attempts[3].span_id,)]

        # Replayed by kanal replay, the event's delivery joins the trace too.
        spans = await _spans(collector, replayed_trace, 2 + 2)
        _assert_received(spans, replayed_sender)
        live, replayed_delivery = _named(spans, "deliver")
        assert (live.service, replayed_delivery.service) == ("kanal-dispatcher", "kanal-replay")
        assert (
            replayed_delivery.parent == replayed_sender
            and replayed_delivery.tags["kanal.trigger"] == "rd/plain"
        )
        assert _parent_id(again, replayed_trace) == replayed_delivery.span_id
    finally:
        for sink in (failing, plain):
            await sink.close()
