"""The ingress's spans (ingress.tracing), exported to memory: which requests are traced, what
traceparent is stored with their records, and the spans' parents and attributes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from channel.errors import Unavailable
from channel.settings import Settings
from channel.tracecontext import parse
from channel.tracing import Tracing
from ingress.app import IngressApp, Request, Response
from ingress.routing import Route
from ingress.tracing import IngressTracer
from support.memory_sink import MemoryEventSink

BINARY = [
    (b"ce-id", b"1"),
    (b"ce-specversion", b"1.0"),
    (b"ce-type", b"greeting"),
    (b"ce-source", b"src"),
    (b"content-type", b"application/json"),
]
SENDER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331"


class Traced:
    def __init__(self, ratio: float) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracing = Tracing(Settings(tracing_sampling_ratio=ratio), "ingress", exporter=self.exporter)
        self.sink = MemoryEventSink()
        self.app = IngressApp(Settings(), self.sink, ready=lambda: True)
        self.app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic-b")}
        self.app.tracer = IngressTracer(self.tracing)

    async def post(self, traceparent: str | None) -> tuple[int, str | None]:
        headers = [*BINARY, *([(b"traceparent", traceparent.encode())] if traceparent else [])]
        answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        now = self.app.handle(Request("POST", "/ns/default", headers, b"{}"), answered.set_result)
        status = (now or await answered).status
        stored = dict(self.sink.topics["topic-b"][-1].headers).get("traceparent") if status == 202 else None
        return status, stored.decode() if stored is not None else None

    def spans(self) -> list[ReadableSpan]:
        self.tracing.shutdown()  # sends what is queued
        return sorted(self.exporter.get_finished_spans(), key=lambda span: span.kind.value)


@pytest.fixture
def traced() -> Iterator[Traced]:
    made = Traced(ratio=0.0)
    yield made
    made.tracing.shutdown()


async def test_a_sampled_sender_is_the_parent_and_its_traceparent_is_stored(traced: Traced) -> None:
    status, stored = await traced.post(f"{SENDER}-01")
    assert status == 202 and stored == f"{SENDER}-01"  # the deliveries' parent: the sender's span
    server, producer = traced.spans()
    assert (server.kind, producer.kind) == (SpanKind.SERVER, SpanKind.PRODUCER)
    assert server.parent is not None and server.parent.span_id == 0xB7AD6B7169203331
    assert server.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert producer.parent is not None and producer.parent.span_id == server.context.span_id
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/ns/default",
        "kanal.kind": "broker",
        "kanal.namespace": "ns",
        "kanal.name": "default",
        "cloudevents.event_id": "1",
        "cloudevents.event_type": "greeting",
        "cloudevents.event_source": "src",
        "http.response.status_code": 202,
    }
    assert producer.name == "send topic-b"
    assert (producer.attributes or {})["messaging.destination.name"] == "topic-b"


async def test_an_unsampled_sender_is_stored_as_sent_and_nothing_is_recorded(traced: Traced) -> None:
    assert await traced.post(f"{SENDER}-00") == (202, f"{SENDER}-00")
    assert traced.spans() == []


@pytest.mark.parametrize(("ratio", "recorded"), [(0.0, False), (1.0, True)])
async def test_without_a_traceparent_the_ingress_starts_a_trace_at_the_ratio(
    ratio: float, recorded: bool
) -> None:
    traced = Traced(ratio)
    status, stored = await traced.post(None)
    spans = traced.spans()
    assert status == 202 and len(spans) == (2 if recorded else 0)
    if recorded:  # the stored context is the ingress's server span, a root
        parsed = parse(stored)
        assert parsed is not None and parsed.sampled
        assert spans[0].parent is None and spans[0].context.span_id == parsed.span_id
    else:  # as with tracing off: nothing is stored, and the dispatcher makes no span
        assert stored is None


@pytest.mark.parametrize(("ratio", "replaced"), [(0.0, False), (1.0, True)])
async def test_an_invalid_traceparent_is_replaced_by_a_recorded_trace_only(
    ratio: float, replaced: bool
) -> None:
    traced = Traced(ratio)
    status, stored = await traced.post("00-not-a-trace-01")
    traced.spans()
    assert status == 202 and (parse(stored) is not None) is replaced
    if not replaced:
        assert stored == "00-not-a-trace-01"  # as with tracing off


async def test_a_write_kafka_refuses_marks_the_spans(traced: Traced) -> None:
    traced.sink.fail = Unavailable("Kafka is away")
    status, _ = await traced.post(f"{SENDER}-01")
    assert status == 503
    server, producer = traced.spans()
    assert producer.status.status_code is StatusCode.ERROR and "Kafka is away" in (
        producer.status.description or ""
    )
    assert server.status.status_code is StatusCode.ERROR
    assert (server.attributes or {})["http.response.status_code"] == 503
