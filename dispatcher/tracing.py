"""The dispatcher's spans: each delivery attempt, and the replies and dead letters they lead to.

Made only with tracing on (`Dispatcher(tracer=...)`) and only for an event whose stored
traceparent is sampled (the ingress decided; `channel.tracecontext`). Every span of a delivery is
a child of that stored context, the sender's span: each attempt to the subscriber (a client span,
with the Trigger or Subscription, the retry number and the subscriber's status), each attempt to
the dead-letter sink and the reply (linked to the subscriber attempt they come from), and the
writes of replies and dead letters to Kafka. A redrive or replay reads the same stored context,
so its spans join the same trace. The `traceparent` a request carries is its own span's: the
subscriber's spans are children of the attempt that reached it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from channel.events import CloudEvent
from channel.tracecontext import TraceParent, flagged_sampled, parse
from channel.tracing import AttributeValue, Span, SpanKind, Status, StatusCode, Tracing, traceparent_of
from dispatcher.delivery import Attempt
from dispatcher.plan import TriggerPlan

if TYPE_CHECKING:
    from dispatcher.dispatch import Source

__all__ = ["DeliveryTrace", "DispatchTracer", "attempt_attributes", "outcome_attributes"]

# What a span's request is for: the subscriber, its dead-letter sink, a Subscription's reply URL.
ROLES: Final = {"subscriber": "deliver", "dead_letter": "dead letter", "reply": "reply"}


def attempt_attributes(
    plan: TriggerPlan, event: CloudEvent, source: Source, url: str, retry: int
) -> dict[str, AttributeValue]:
    """A request's attributes: the Trigger or Subscription, the event and record, where it goes
    (the URL without its query, which may hold a secret) and the retry number (0: the first try)."""
    parts = urlsplit(url)
    return {
        f"kanal.{plan.kind}": f"{plan.namespace}/{plan.name}",
        "kanal.namespace": plan.namespace,
        "kanal.retry": retry,
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "messaging.destination.name": plan.topic,
        "messaging.destination.partition.id": str(source.partition),
        "messaging.kafka.offset": source.offset,
        "http.request.method": "POST",
        "server.address": parts.hostname or "",
        "url.full": parts._replace(query="", fragment="").geturl(),
    }


def outcome_attributes(attempt: Attempt) -> dict[str, AttributeValue]:
    """What an attempt's span records of its outcome: the status, or why there was none."""
    if attempt.status is not None:
        return {"http.response.status_code": attempt.status}
    return {"error.type": "timeout" if attempt.timed_out else "no_response"}


class DispatchTracer:
    """Starts the trace of one delivery, for a sampled event."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    def delivery(self, plan: TriggerPlan, event: CloudEvent, source: Source) -> DeliveryTrace | None:
        """The spans of delivering `event` to `plan`; None when its trace is not recorded."""
        traceparent = source.traceparent
        if traceparent is None or not flagged_sampled(traceparent):
            return None  # most events: one character read
        parent = parse(traceparent)
        if parent is None or not parent.sampled:
            return None
        return DeliveryTrace(self._tracing, plan, event, source, parent)


class DeliveryTrace:
    """The spans of one delivery. `last` is the latest subscriber attempt: what a reply or a
    dead letter comes from."""

    __slots__ = ("_event", "_parent", "_plan", "_source", "_tracing", "last")

    def __init__(
        self, tracing: Tracing, plan: TriggerPlan, event: CloudEvent, source: Source, parent: TraceParent
    ) -> None:
        self._tracing = tracing
        self._plan = plan
        self._event = event
        self._source = source
        self._parent = parent
        self.last: Span | None = None

    def request(self, role: str, url: str, retry: int, event: CloudEvent) -> Span:
        """The span of one request (`role` in ROLES), started; end it with `finish`."""
        attributes = attempt_attributes(self._plan, event, self._source, url, retry)
        links = () if role == "subscriber" or self.last is None else (self.last,)
        span = self._tracing.span(ROLES[role], SpanKind.CLIENT, self._parent, attributes, links=links)
        if role == "subscriber":
            self.last = span
        return span

    @staticmethod
    def headers(span: Span, headers: dict[str, str]) -> dict[str, str]:
        """`headers`, with the traceparent that makes the receiver's spans children of `span`."""
        return {**headers, "traceparent": traceparent_of(span)}

    @staticmethod
    def finish(span: Span, attempt: Attempt, failed: bool) -> None:
        """End a request's span with its outcome (`failed`: not a success for Kanal)."""
        span.set_attributes(outcome_attributes(attempt))
        if failed:
            span.set_status(Status(StatusCode.ERROR, attempt.error or None))
        span.end()

    def stored(self, name: str, topic: str, event: CloudEvent) -> Span:
        """The span of writing a reply or a dead letter to `topic`, linked to the subscriber
        attempt it comes from, started; end it with `written`."""
        attributes: dict[str, AttributeValue] = {
            f"kanal.{self._plan.kind}": f"{self._plan.namespace}/{self._plan.name}",
            "kanal.namespace": self._plan.namespace,
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.type,
            "messaging.system": "kafka",
            "messaging.destination.name": topic,
        }
        links = () if self.last is None else (self.last,)
        return self._tracing.span(name, SpanKind.PRODUCER, self._parent, attributes, links=links)

    @staticmethod
    def written(span: Span, error: str | None) -> None:
        """End a write's span: done, or why not."""
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
