"""The ingress's spans: one server span per request it stores events for, and its Kafka write.

Made only with tracing on (`IngressApp.tracer`). The request's `traceparent` decides: a sender's
sampled one is the server span's parent; a sender's unsampled one is stored as sent and nothing
is recorded; without a valid one the ingress starts a trace at the sampling ratio, and stores
its server span's context with the records so that the dispatcher's spans join it. A trace it
does not start costs nothing more: the request is stored as with tracing off, and the dispatcher
makes no span for an event without a sampled traceparent. What is stored is the sender's
context when there is one: every delivery, retry, replay and redrive of the event is then a
child of the sender's span.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from random import random
from typing import TYPE_CHECKING

from channel.events import CloudEvent
from channel.tracecontext import flagged_sampled, keeps_root, parse
from channel.tracing import AttributeValue, Span, SpanKind, Status, StatusCode, Tracing, traceparent_of

if TYPE_CHECKING:
    from ingress.app import Response
    from ingress.routing import Route

__all__ = ["IngressTracer", "receive_attributes"]


def receive_attributes(route: Route, path: str, events: Sequence[CloudEvent]) -> dict[str, AttributeValue]:
    """The server span's attributes: what was posted where (the event's id, type and source when
    the request carried one event; how many it carried otherwise)."""
    attributes: dict[str, AttributeValue] = {
        "http.request.method": "POST",
        "url.path": path,
        "kanal.kind": route.kind,
        "kanal.namespace": route.namespace,
        "kanal.name": route.name,
    }
    if len(events) == 1:
        event = events[0]
        attributes |= {
            "cloudevents.event_id": event.id,
            "cloudevents.event_type": event.type,
            "cloudevents.event_source": event.source,
        }
    else:
        attributes["messaging.batch.message_count"] = len(events)
    return attributes


class IngressTracer:
    """Decides whether a request is traced and makes its spans."""

    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing
        self._ratio = tracing.ratio

    def received(
        self,
        route: Route,
        path: str,
        sender: bytes | None,
        events: Sequence[CloudEvent],
        started: float,
        reply: Callable[[Response], None],
    ) -> tuple[bytes | None, Callable[[Response], None]]:
        """The traceparent to store with the request's records, and `reply`, which (when the
        request is traced) also ends its spans with the answer."""
        if sender is None or not flagged_sampled(sender):
            # The common cases, and cheap: no traceparent, or one that asks for no sampling, and
            # no trace started here. The request is then stored as with tracing off.
            if not keeps_root(self._ratio, random()):
                return sender, reply
            if parse(sender) is not None:
                return sender, reply  # a valid unsampled one: its sender has decided
            parent = None
        else:
            parent = parse(sender)
            if parent is None and not keeps_root(self._ratio, random()):
                return sender, reply  # an invalid one, passed on as with tracing off
        tracing = self._tracing
        # `started` is the request's first byte on the perf_counter clock; spans take wall time.
        start = time.time_ns() - int((time.perf_counter() - started) * 1e9)
        attributes = receive_attributes(route, path, events)
        server = tracing.span("receive", SpanKind.SERVER, parent, attributes, start_time=start)
        write = {"messaging.system": "kafka", "messaging.destination.name": route.topic}
        producer = tracing.span(f"send {route.topic}", SpanKind.PRODUCER, server, write)
        stored = sender if parent is not None else traceparent_of(server).encode()
        return stored, _Traced(server, producer, reply)


class _Traced:
    """`reply`, ending the request's spans first: the Kafka write's when Kafka has answered, the
    server span's with the status."""

    __slots__ = ("_producer", "_reply", "_server")

    def __init__(self, server: Span, producer: Span, reply: Callable[[Response], None]) -> None:
        self._server = server
        self._producer = producer
        self._reply = reply

    def __call__(self, response: Response) -> None:
        if response.status != 202:
            why = response.body.decode("utf-8", "replace")[:200]
            self._producer.set_status(Status(StatusCode.ERROR, why))
        self._producer.end()
        self._server.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            self._server.set_status(Status(StatusCode.ERROR))
        self._server.end()
        self._reply(response)
