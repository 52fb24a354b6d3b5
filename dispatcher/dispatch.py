"""Delivering one event to one Trigger: attempts, retries, reply, dead letter, or a visible drop.

The decisions come from pure code (`retry.classify_status`, `RetryPolicy.next_delay`,
`deadletter.error_extensions`); this module sequences them and waits. The result is a value:
the consumer marks the record done whatever it is, because every outcome is final (delivered,
dead-lettered or dropped with a warning and a counter). Only a stop interrupts a delivery: a
delivery waiting between attempts raises Interrupted at once (the wait may be minutes long), and
one with a request in flight is let finish for a bounded time. Either way its record stays
uncommitted and its attempt count recorded: the partition's next owner continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka.structs import ConsumerRecord

from channel.errors import InvalidEvent, KanalError
from channel.events import CloudEvent, KafkaRecord, binary_problem, parse_http_response, to_kafka_record
from channel.kafka import HOP_HEADER
from channel.producer import EventSink
from dispatcher import metrics
from dispatcher.attempts import Attempts, MemoryAttempts
from dispatcher.deadletter import ORIGIN, error_extensions, with_extensions
from dispatcher.delivery import Attempt, Poster
from dispatcher.gate import Gate, GateClosed
from dispatcher.limiter import signal_of
from dispatcher.plan import TriggerPlan
from dispatcher.retry import Outcome, RetryPolicy, classify_status, parse_retry_after

if TYPE_CHECKING:  # imported by the service only when tracing is on (it loads OpenTelemetry)
    from dispatcher.tracing import DeliveryTrace, DispatchTracer

__all__ = ["Dispatcher", "Interrupted", "Result", "Source", "source_of"]

log = logging.getLogger(__name__)


class Result(enum.Enum):
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"
    DROPPED = "dropped"


class Interrupted(Exception):
    """A stop came while the delivery waited between attempts: it is not finished, its record
    must not be committed, and its attempt count stays recorded for the next owner."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where the event came from, for logs and for the reply's hop count."""

    partition: int
    offset: int
    hops: int = 0
    traceparent: str | None = None
    key: bytes | None = None  # the record's key (the event's partitionkey), for ordered delivery


def source_of(record: ConsumerRecord) -> Source:
    """Where a record came from, for logs and replies: partition, offset, hops, traceparent, key."""
    hops = 0
    trace = None
    for key, value in record.headers or ():
        if key == HOP_HEADER:
            try:
                hops = int(value)
            except ValueError:
                hops = 0
        elif key == "traceparent":
            trace = value.decode("latin-1")
    return Source(record.partition, record.offset, hops, trace, record.key)


class Dispatcher:
    """Shared by every Trigger consumer of a process."""

    def __init__(
        self,
        poster: Poster,
        replies: EventSink,
        *,
        max_hops: int,
        attempts: Attempts | None = None,
        tracer: DispatchTracer | None = None,
    ) -> None:
        self._poster = poster
        self._replies = replies
        self._max_hops = max_hops
        self._attempts: Attempts = attempts or MemoryAttempts()
        self._tracer = tracer  # None: tracing off (dispatcher.tracing)

    async def deliver(
        self,
        plan: TriggerPlan,
        event: CloudEvent,
        source: Source,
        *,
        stop: asyncio.Event | None = None,
        gate: Gate | None = None,
    ) -> Result:
        """Deliver `event` to its final outcome; raises Interrupted if `stop` is set while it waits
        to try again, or `gate` (which every attempt to the subscriber passes) is closed."""
        failed_before = self._attempts.get(plan.group, source.partition, source.offset)
        trace = self._tracer.delivery(plan, event, source) if self._tracer is not None else None
        result = await self._deliver(plan, event, source, failed_before, stop, gate, trace)
        # Only a final outcome clears the count; a cancelled delivery (shutdown) keeps it.
        if failed_before or plan.retry.retry:
            await self._attempts.clear(plan.group, source.partition, source.offset)
        return result

    async def caught_up(self) -> None:
        """Wait until attempt counts written by other dispatchers are known here."""
        await self._attempts.caught_up()

    async def _deliver(
        self,
        plan: TriggerPlan,
        event: CloudEvent,
        source: Source,
        failed_before: int,
        stop: asyncio.Event | None,
        gate: Gate | None,
        trace: DeliveryTrace | None,
    ) -> Result:
        headers = {"Prefer": "reply", **_request_headers(plan, source)}
        if failed_before > plan.retry.retry:
            # An earlier owner used up every attempt and stopped before the dead letter.
            last: Attempt | None = Attempt(None, error="attempts exhausted before a restart")
            dest = plan.subscriber
        else:
            last, dest = await self._with_retries(
                plan,
                plan.subscriber,
                event,
                headers,
                source,
                stop,
                reply=True,
                failed_before=failed_before,
                gate=gate,
                trace=trace,
            )
        if last is None:
            return self._finish(plan, event, source, Result.DELIVERED)
        extensions = error_extensions(dest, last.status, last.body)
        stored = False
        if plan.dead_letter_topic is not None:
            stored = await self._dead_letter_to_topic(plan, event, extensions, source, trace)
            if plan.dead_letter is None:
                return self._finish(plan, event, source, Result.DEAD_LETTERED if stored else Result.DROPPED)
        if plan.dead_letter is None:
            log.warning(
                "dropped event id=%s trigger=%s partition=%d offset=%d: %s failed with %s and the "
                "Trigger has no dead-letter sink",
                event.id,
                plan.key,
                source.partition,
                source.offset,
                dest,
                last.status or last.error,
            )
            return self._finish(plan, event, source, Result.DROPPED)
        dead = CloudEvent(with_extensions(event.attributes, extensions), event.data)
        # An event binary mode cannot carry (a datacontenttype beyond Latin-1) failed every attempt
        # for that; its dead letter goes in the JSON format, which can.
        dead_last, _ = await self._with_retries(
            plan,
            plan.dead_letter,
            dead,
            _request_headers(plan, source),
            source,
            stop,
            reply=False,
            structured=plan.structured or binary_problem(dead) is not None,
            trace=trace,
        )
        if dead_last is None:
            log.info(
                "dead-lettered event id=%s trigger=%s partition=%d offset=%d to %s",
                event.id,
                plan.key,
                source.partition,
                source.offset,
                plan.dead_letter,
            )
            return self._finish(plan, event, source, Result.DEAD_LETTERED)
        log.warning(
            "%s event id=%s trigger=%s partition=%d offset=%d: dead-letter sink %s failed with %s",
            "dead-lettered to the topic only:" if stored else "dropped",
            event.id,
            plan.key,
            source.partition,
            source.offset,
            plan.dead_letter,
            dead_last.status or dead_last.error,
        )
        return self._finish(plan, event, source, Result.DEAD_LETTERED if stored else Result.DROPPED)

    async def _dead_letter_to_topic(
        self,
        plan: TriggerPlan,
        event: CloudEvent,
        extensions: dict[str, str],
        source: Source,
        trace: DeliveryTrace | None = None,
    ) -> bool:
        """Write the dead letter to the plan's dead-letter topic, retrying while Kafka is away."""
        topic = plan.dead_letter_topic
        assert topic is not None
        dead = CloudEvent(with_extensions(event.attributes, {**extensions, ORIGIN: plan.key}), event.data)
        record = _traced(to_kafka_record(dead), source)  # so a redrive continues the trace
        span = trace.stored("dead letter", topic, dead) if trace is not None else None
        delay = 0.2
        for attempt in range(1, 6):
            try:
                await self._replies.send(topic, [record])
            except KanalError as exc:
                if attempt == 5 or not exc.retryable:
                    log.warning(
                        "cannot write dead letter id=%s of %s to topic %s: %s", event.id, plan.key, topic, exc
                    )
                    if span is not None and trace is not None:
                        trace.written(span, str(exc))
                    return False
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if span is not None and trace is not None:
                trace.written(span, None)
            log.info(
                "dead-lettered event id=%s %s partition=%d offset=%d to topic %s",
                event.id,
                plan.key,
                source.partition,
                source.offset,
                topic,
            )
            return True
        return False

    def _finish(self, plan: TriggerPlan, event: CloudEvent, source: Source, result: Result) -> Result:
        metrics.EVENTS.labels(*plan.series, result.value).inc()
        return result

    async def _with_retries(
        self,
        plan: TriggerPlan,
        url: str,
        event: CloudEvent,
        headers: dict[str, str],
        source: Source,
        stop: asyncio.Event | None,
        *,
        reply: bool,
        failed_before: int = 0,
        structured: bool | None = None,
        gate: Gate | None = None,
        trace: DeliveryTrace | None = None,
    ) -> tuple[Attempt | None, str]:
        """None when delivered; else the last failed attempt and the destination that failed.
        `failed_before` attempts were made by an earlier owner of the partition; `structured`:
        the JSON format whatever the plan says; `gate`: what each attempt to `url` waits for;
        `trace`: the delivery's spans, when it is traced."""
        policy = plan.retry
        destination = "subscriber" if reply else "dead_letter"
        n = failed_before
        if n:
            await _rest(policy.next_delay(n, random.random(), None), stop)
        while True:
            admitted = 0.0
            if gate is not None:
                try:
                    admitted = await gate.acquire()
                except GateClosed:
                    raise Interrupted from None
            span = None
            sent = headers
            if trace is not None:  # this attempt's span, and its traceparent on the request
                span = trace.request("subscriber" if reply else "dead_letter", url, n, event)
                sent = trace.headers(span, headers)
            started = time.perf_counter()
            try:
                attempt = await self._poster.post(
                    url,
                    event,
                    timeout=policy.timeout,
                    headers=sent,
                    structured=plan.structured if structured is None else structured,
                    ca_certs=plan.ca_certs_for(url),
                )
            except BaseException:
                if gate is not None:
                    gate.release(admitted, None)
                if span is not None:
                    span.end()
                raise
            if gate is not None:
                self._release(gate, admitted, attempt, policy)
            if reply:
                metrics.DELIVERY_LATENCY.labels(*plan.series).observe(time.perf_counter() - started)
            metrics.ATTEMPTS.labels(*plan.series, destination, metrics.code_label(attempt.status)).inc()
            outcome = classify_status(attempt.status)
            if span is not None and trace is not None:
                trace.finish(span, attempt, outcome is not Outcome.SUCCESS)
            failed_dest = url
            if outcome is Outcome.SUCCESS and reply:
                failure = await self._reply(plan, attempt, source, trace)
                if failure is None:
                    return None, url
                attempt, failed_dest = failure
                # The whole delivery is retried (RPL-04, RPL-06, RPL-11), unless a Subscription's
                # reply destination gave an answer that retrying cannot change (a 400, say). A
                # Trigger's reply Kafka would not store is always retried (RPL-06), even one it
                # refuses as too large: the subscriber may answer differently next time.
                reply_refused = (
                    plan.reply_topic is None
                    and failed_dest != url
                    and classify_status(attempt.status) is Outcome.FATAL
                )
                outcome = Outcome.FATAL if reply_refused else Outcome.RETRYABLE
            elif outcome is Outcome.SUCCESS:
                return None, url
            if outcome is Outcome.FATAL or n >= policy.retry:
                return attempt, failed_dest
            n += 1
            if reply:
                await self._attempts.record(plan.group, source.partition, source.offset, n)
            retry_after = None
            if attempt.status in (429, 503):
                retry_after = parse_retry_after(attempt.header("Retry-After"), time.time())
            delay = policy.next_delay(n, random.random(), retry_after)
            log.debug("retry %d of event id=%s to %s in %.3fs", n, event.id, url, delay)
            await _rest(delay, stop)

    @staticmethod
    def _release(gate: Gate, admitted: float, attempt: Attempt, policy: RetryPolicy) -> None:
        """Tell the subscriber's gate how the attempt went. A Retry-After pauses the subscriber for
        every delivery of this Trigger, capped as the retry's wait is (retryAfterMax: PT0S, none)."""
        pause = None
        if attempt.status in (429, 503):
            retry_after = parse_retry_after(attempt.header("Retry-After"), time.time())
            if retry_after is not None:
                pause = min(retry_after, policy.retry_after_cap())
        gate.release(admitted, signal_of(attempt.status, attempt.timed_out), pause)

    async def _reply(
        self, plan: TriggerPlan, attempt: Attempt, source: Source, trace: DeliveryTrace | None = None
    ) -> tuple[Attempt, str] | None:
        """Handle a 200 response's CloudEvent; on failure, what failed and where, else None."""
        if attempt.status != 200:
            return None  # only a 200 carries a reply; a 202 never does (RPL-02)
        try:
            reply = parse_http_response(attempt.status, attempt.headers, attempt.body)
        except InvalidEvent as exc:
            failed = Attempt(attempt.status, f"malformed reply: {exc}".encode(), attempt.headers)
            return failed, plan.subscriber
        if reply is None:
            return None  # a plain 2xx body is a success, not a reply (D-07)
        if plan.reply_topic is None:
            return await self._reply_over_http(plan, reply, source, trace)
        hops = source.hops + 1
        if hops > self._max_hops:
            log.warning(
                "dropped reply id=%s of %s: %d hops exceed the limit of %d",
                reply.id,
                plan.key,
                hops,
                self._max_hops,
            )
            metrics.REPLIES.labels(*plan.series, "loop_dropped").inc()
            return None
        record = to_kafka_record(reply)
        record.headers.append((HOP_HEADER, str(hops).encode()))
        _traced(record, source)
        span = trace.stored("reply", plan.reply_topic, reply) if trace is not None else None
        try:
            await self._replies.send(plan.reply_topic, [record])
        except KanalError as exc:
            log.warning("cannot store reply id=%s of %s: %s", reply.id, plan.key, exc)
            if span is not None and trace is not None:
                trace.written(span, str(exc))
            # A reply too large for the topic is what the ingress would answer 413 for: a dead
            # letter says so (knativeerrorcode).
            status = None if exc.retryable else 413
            return Attempt(status, error=f"cannot store reply: {exc}"), plan.reply_to or plan.reply_topic
        if span is not None and trace is not None:
            trace.written(span, None)
        metrics.REPLIES.labels(*plan.series, "stored").inc()
        return None

    async def _reply_over_http(
        self, plan: TriggerPlan, reply: CloudEvent, source: Source, trace: DeliveryTrace | None = None
    ) -> tuple[Attempt, str] | None:
        """A Subscription's reply goes to its reply destination, or nowhere (RPL-09, RPL-10)."""
        if not plan.reply_to:
            metrics.REPLIES.labels(*plan.series, "discarded").inc()
            return None
        headers = _request_headers(plan, source)
        span = None
        if trace is not None:
            span = trace.request("reply", plan.reply_to, 0, reply)
            headers = trace.headers(span, headers)
        attempt = await self._poster.post(
            plan.reply_to,
            reply,
            timeout=plan.retry.timeout,
            headers=headers,
            structured=plan.structured,
            ca_certs=plan.ca_certs_for(plan.reply_to),
        )
        metrics.ATTEMPTS.labels(*plan.series, "reply", metrics.code_label(attempt.status)).inc()
        if span is not None and trace is not None:
            trace.finish(span, attempt, classify_status(attempt.status) is not Outcome.SUCCESS)
        if classify_status(attempt.status) is Outcome.SUCCESS:
            metrics.REPLIES.labels(*plan.series, "stored").inc()
            return None
        return attempt, plan.reply_to


async def _rest(delay: float, stop: asyncio.Event | None) -> None:
    """Wait `delay` seconds before the next attempt, or raise Interrupted as soon as `stop` is set."""
    if stop is None:
        await asyncio.sleep(delay)
        return
    if not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
    if stop.is_set():
        raise Interrupted


def _request_headers(plan: TriggerPlan, source: Source) -> dict[str, str]:
    """The headers of every request made for an event: its namespace, and the trace it is in."""
    headers = {"Kn-Namespace": plan.namespace}
    if source.traceparent:
        headers["traceparent"] = source.traceparent
    return headers


def _traced(record: KafkaRecord, source: Source) -> KafkaRecord:
    """`record`, in the trace its event was in (a reply, a dead letter)."""
    if source.traceparent:
        record.headers.append(("traceparent", source.traceparent.encode()))
    return record
