"""OpenTelemetry for the ingress and the dispatcher: the tracer, its sampler and its OTLP/HTTP export.

Imported only by a component whose ``KANAL_TRACING_ENDPOINT`` is set (`kanal.components`), so a
process with tracing off never loads the SDK. Finished spans wait in the batch processor's queue,
bounded by ``tracing_max_queue_size`` (a collector that is down makes it drop spans, not grow),
and are sent from its own thread every ``tracing_export_interval`` seconds; `Tracing.shutdown`
sends what is left when the component stops. No global tracer provider is set: the spans are
Kanal's, made through the `Tracing` the component was given.

The sampler is parent-based with every root kept: a span's parent always carries the decision,
made once per event by the ingress (`channel.tracecontext`), so the SDK never samples again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.util.types import AttributeValue

from channel.settings import Settings
from channel.tracecontext import TraceParent, traces_url

__all__ = [
    "AttributeValue",
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "Tracing",
    "context_of",
    "sampler",
    "traceparent_of",
]

_EXPORT_TIMEOUT: Final = 5.0  # seconds one batch may take to reach the collector
_BATCH: Final = 512  # spans per export request, at most
# The SDK logs a warning for every span its full queue drops: thousands a second while the
# collector is down. One a minute says as much.
_DROPS_LOGGER: Final = "opentelemetry.sdk._shared_internal"
_DROPS_EVERY: Final = 60.0


class _FewerDrops(logging.Filter):
    """Lets one "Queue full" warning through per _DROPS_EVERY seconds; every other record passes."""

    def __init__(self) -> None:
        super().__init__()
        self._last = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Queue full"):
            return True
        now = time.monotonic()
        if now - self._last < _DROPS_EVERY:
            return False
        self._last = now
        record.msg += " (tracing_max_queue_size reached; logged once a minute at most)"
        return True


def sampler() -> Sampler:
    """Parent-based, every root kept: the ingress has decided by the time a span starts."""
    return ParentBased(root=ALWAYS_ON)


def context_of(parent: TraceParent) -> Context:
    """A context whose current span is `parent`, the remote span of a stored traceparent."""
    flags = TraceFlags(TraceFlags.SAMPLED if parent.sampled else TraceFlags.DEFAULT)
    remote = SpanContext(parent.trace_id, parent.span_id, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(remote))


def traceparent_of(span: Span) -> str:
    """The `traceparent` that makes a request's spans children of `span`."""
    context = span.get_span_context()
    return TraceParent(context.trace_id, context.span_id, context.trace_flags.sampled).header()


class Tracing:
    """One component's tracer (service.name ``<tracing_service_prefix>-<component>``) and the
    export behind it."""

    def __init__(self, settings: Settings, component: str, *, exporter: SpanExporter | None = None) -> None:
        """`exporter`: where the spans go instead of the OTLP endpoint (the unit tests' memory)."""
        resource = Resource.create({"service.name": f"{settings.tracing_service_prefix}-{component}"})
        self._provider = TracerProvider(resource=resource, sampler=sampler())
        if exporter is None:
            endpoint = traces_url(settings.tracing_endpoint)
            exporter = OTLPSpanExporter(endpoint=endpoint, timeout=_EXPORT_TIMEOUT)
        queue = settings.tracing_max_queue_size
        self._provider.add_span_processor(
            BatchSpanProcessor(
                exporter,
                max_queue_size=queue,
                schedule_delay_millis=settings.tracing_export_interval * 1000,
                max_export_batch_size=min(_BATCH, queue),
                export_timeout_millis=_EXPORT_TIMEOUT * 1000,
            )
        )
        logger = logging.getLogger(_DROPS_LOGGER)
        if not any(isinstance(f, _FewerDrops) for f in logger.filters):
            logger.addFilter(_FewerDrops())
        self._tracer = self._provider.get_tracer("kanal")
        self.ratio = settings.tracing_sampling_ratio

    def span(
        self,
        name: str,
        kind: SpanKind,
        parent: TraceParent | Span | None,
        attributes: Mapping[str, AttributeValue],
        *,
        links: Sequence[Span] = (),
        start_time: int | None = None,
    ) -> Span:
        """A started span, child of `parent` (a stored traceparent or a span of this process; None:
        a new trace), linked to `links`; the caller ends it."""
        if parent is None:
            context = Context()  # not the current context: a root
        elif isinstance(parent, TraceParent):
            context = context_of(parent)
        else:
            context = trace.set_span_in_context(parent)
        return self._tracer.start_span(
            name,
            context,
            kind,
            attributes,
            [Link(link.get_span_context()) for link in links],
            start_time,
            record_exception=False,
        )

    def flush(self) -> None:
        """Send the spans queued now, waiting for the collector (at most the export timeout)."""
        self._provider.force_flush(int(_EXPORT_TIMEOUT * 1000))

    def shutdown(self) -> None:
        """Send the spans still queued (bounded by the export timeout) and stop the export thread."""
        self._provider.shutdown()
