"""The dispatcher's spans (dispatcher.tracing), exported to memory: one per attempt with its
retry number and status, the traceparent each request carries, and the reply's and dead letter's
spans linked to the attempt they come from; nothing for an unsampled event."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from channel.events import CloudEvent
from channel.settings import Settings
from channel.tracecontext import parse
from channel.tracing import Tracing
from dispatcher.delivery import Attempt
from dispatcher.dispatch import Dispatcher, Result, Source
from dispatcher.retry import RetryPolicy
from dispatcher.tracing import DispatchTracer, attempt_attributes, outcome_attributes
from support.dispatch import ScriptedPoster, trigger_plan
from support.memory_sink import MemoryEventSink

SUBSCRIBER = "http://sub.example:8080/hook?token=secret"
DEAD_LETTER = "http://127.0.0.1:9/dead-letter"
SENDER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"
EVENT = CloudEvent({"id": "e1", "specversion": "1.0", "type": "greeting", "source": "s"}, b"{}")
REPLY = Attempt(
    200,
    b"{}",
    (("ce-id", "r1"), ("ce-specversion", "1.0"), ("ce-type", "greeting.reply"), ("ce-source", "sub")),
)


async def _deliver(
    answer: Attempt, traceparent: str, *, reply_topic: str | None = None, reply_to: str | None = None
) -> tuple[Result, ScriptedPoster, list[ReadableSpan], MemoryEventSink]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(Settings(), "dispatcher", exporter=exporter)
    poster = ScriptedPoster(lambda url, event: answer if url == SUBSCRIBER else Attempt(202))
    replies = MemoryEventSink()
    dispatcher = Dispatcher(poster, replies, max_hops=10, tracer=DispatchTracer(tracing))
    plan = trigger_plan(
        subscriber=SUBSCRIBER,
        dead_letter=DEAD_LETTER,
        reply_topic=reply_topic,
        reply_to=reply_to,
        retry=RetryPolicy(retry=2, backoff_delay=0.001, jitter=0),
    )
    result = await dispatcher.deliver(plan, EVENT, Source(partition=1, offset=7, traceparent=traceparent))
    tracing.shutdown()
    return result, poster, sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0), replies


async def test_each_attempt_is_a_span_and_the_dead_letter_is_linked_to_the_last() -> None:
    result, poster, spans, _ = await _deliver(Attempt(500), f"{SENDER}-01")
    assert result is Result.DEAD_LETTERED
    *attempts, dead = spans
    assert [(s.name, s.kind) for s in attempts] == [("deliver", SpanKind.CLIENT)] * 3
    assert [(s.attributes or {})["kanal.retry"] for s in attempts] == [0, 1, 2]
    assert {(s.attributes or {})["http.response.status_code"] for s in attempts} == {500}
    assert all(s.status.status_code is StatusCode.ERROR for s in attempts)
    # Every span's parent is the sender's span: retries are siblings, not a chain.
    assert {s.parent.span_id for s in spans if s.parent} == {0xB7AD6B7169203331} and all(
        s.parent for s in spans
    )
    assert dead.name == "dead letter" and [link.context.span_id for link in dead.links] == [
        attempts[-1].context.span_id
    ]
    # Each request carries its own span's context: the receiver's spans are its children.
    sent = [parse(headers["traceparent"]) for headers in poster.headers]
    assert [p.span_id for p in sent if p] == [s.context.span_id for s in spans]


async def test_a_reply_written_to_the_broker_is_a_span_linked_to_its_attempt() -> None:
    result, _, spans, replies = await _deliver(REPLY, f"{SENDER}-01", reply_topic="topic-b")
    assert result is Result.DELIVERED
    attempt, reply = spans
    assert (attempt.attributes or {})["http.response.status_code"] == 200
    assert (reply.name, reply.kind) == ("reply", SpanKind.PRODUCER)
    assert [link.context.span_id for link in reply.links] == [attempt.context.span_id]
    # The stored reply keeps the sender's context: its own deliveries join the trace.
    [record] = replies.topics["topic-b"]
    assert dict(record.headers)["traceparent"] == f"{SENDER}-01".encode()


async def test_a_subscriptions_reply_posted_to_its_reply_url_is_a_client_span_linked_to_its_attempt() -> None:
    reply_url = "http://127.0.0.1:9/reply"
    result, poster, spans, _ = await _deliver(REPLY, f"{SENDER}-01", reply_to=reply_url)
    assert result is Result.DELIVERED
    attempt, reply = spans
    assert (reply.name, reply.kind, (reply.attributes or {})["url.full"]) == (
        "reply",
        SpanKind.CLIENT,
        reply_url,
    )
    assert [link.context.span_id for link in reply.links] == [attempt.context.span_id]
    sent = parse(poster.headers[1]["traceparent"])
    assert poster.posts[1][0] == reply_url and sent is not None and sent.span_id == reply.context.span_id


async def test_an_unsampled_event_makes_no_span_and_is_sent_its_traceparent_as_stored() -> None:
    _, poster, spans, _ = await _deliver(Attempt(202), f"{SENDER}-00")
    assert spans == [] and poster.headers[0]["traceparent"] == f"{SENDER}-00"


def test_attempt_attributes_name_the_trigger_and_leave_the_query_out() -> None:
    plan = trigger_plan(subscriber=SUBSCRIBER, retry=RetryPolicy())
    attributes = attempt_attributes(plan, EVENT, Source(partition=1, offset=7), SUBSCRIBER, 2)
    assert attributes["kanal.trigger"] == "ns/t" and attributes["kanal.retry"] == 2
    assert (
        attributes["url.full"] == "http://sub.example:8080/hook"
        and attributes["server.address"] == "sub.example"
    )
    assert (attributes["messaging.destination.partition.id"], attributes["messaging.kafka.offset"]) == (
        "1",
        7,
    )


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (Attempt(503), {"http.response.status_code": 503}),
        (Attempt(None, error="refused"), {"error.type": "no_response"}),
        (Attempt(None, timed_out=True), {"error.type": "timeout"}),
    ],
)
def test_outcome_attributes(attempt: Attempt, expected: dict[str, object]) -> None:
    assert outcome_attributes(attempt) == expected
