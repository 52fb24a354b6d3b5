"""The ingress application: CloudEvents over HTTP in, Kafka records out.

Not a framework app, because the ingress is a hot path with one job: parse the request
(`channel.events`), find the Broker's topic (`routing`), write the records and answer. The HTTP
server (`ingress.http`) hands `handle` a whole request and writes the `Response` it returns when
the answer is known at once, or the one it passes to the server's callback once Kafka has
acknowledged. No task, coroutine or extra future is created per request on that path.
`IngressApp` is also an ASGI callable, for embedding and for unit tests.

Status codes: 202 stored (acks=all); 400 invalid event (JSON body listing every problem); 404
unknown or not-Ready Broker, after one refresh of the routes shared by all the requests that wait
for it (at most 64 wait; more get their 404 at once), and for a large body decided before the
server reads it (`unrouted`); 405 other methods (with Allow); 408 request not whole in time (the
server decides); 413 body over the limit (decided from Content-Length before reading, or while
reading), or an event Kafka refuses as larger than its topic takes; 415 structured content Kanal
cannot read; 429 in-flight limit reached; 503 Kafka unavailable (both with Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from channel.errors import InvalidEvent, KanalError, UnsupportedMediaType
from channel.events import CloudEvent, parse_http_request, to_kafka_record
from channel.producer import EventSink
from channel.settings import Settings
from ingress import metrics
from ingress.auth import Authenticator
from ingress.dedup import Deduplicator
from ingress.eventtypes import EventTypeRecorder
from ingress.routing import Route, channel_from_host

if TYPE_CHECKING:  # imported by the service only when tracing is on (it loads OpenTelemetry)
    from ingress.tracing import IngressTracer

__all__ = ["IngressApp", "Request", "Response", "Routes", "declared_over", "header_value", "json_response"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Routes = dict[tuple[str, str, str], Route]
Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_ALLOW = (b"allow", b"POST, OPTIONS")
_RETRY = (b"retry-after", b"1")
# /metrics is not here: it is served on a port of its own (ingress.metrics_server).
_ADMIN = frozenset(("/healthz", "/readyz"))
_PATHS_MAX = 4096
# Requests that may wait for a refresh of the routes at a time (their path unknown); more are
# answered 404 at once, so a flood of unknown paths holds no more than this many.
_MAX_WAITING = 64


@dataclass(slots=True)
class Request:
    """A whole HTTP request: header names lower-case, the path percent-decoded, the body read."""

    method: str
    path: str
    headers: Headers
    body: bytes = b""
    query: bytes = b""
    started: float = field(default_factory=time.perf_counter)
    authorized: bool = False  # the authenticator allowed it already, from its head


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: bytes = b""


ACCEPTED = Response(202, [])
_STOPPING = Response(503, [_JSON], b'{"error": "the server is stopping; the event was not stored"}')


def json_response(status: int, body: dict[str, Any], *extra: tuple[bytes, bytes]) -> Response:
    return Response(status, [_JSON, *extra], json.dumps(body).encode())


class _TooLarge(Exception):
    pass


class _Sampler:
    """Keeps refusals from flooding the log: per key (a status and a Broker or Channel), the first
    refusal is logged at once and then at most one per `interval` seconds, with the number of
    those like it that were not logged meanwhile. A misbehaving Source or a Kafka outage at
    thousands of requests per second thus writes a line every few seconds, not thousands."""

    __slots__ = ("_last", "_skipped", "interval")

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[tuple[object, ...], float] = {}
        self._skipped: dict[tuple[object, ...], int] = {}

    def take(self, key: tuple[object, ...], now: float) -> str | None:
        """None: do not log this one. Else log it, ending its line with what this returns (how
        many like it were left unlogged before it, if any)."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return None
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        return f" ({skipped} more like it not logged in the last {self.interval:.0f} s)" if skipped else ""


class _Disconnected(Exception):
    """The client went away before the whole body arrived: nothing of it may be stored."""


class IngressApp:
    """Answers requests. `routes` is replaced wholesale when the resource log changes."""

    def __init__(
        self,
        settings: Settings,
        sink: EventSink,
        *,
        ready: Callable[[], bool],
        refresh: Callable[[], Awaitable[None]] | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self._routes: Routes = {}
        self._by_path: dict[str, Route] = {}  # found routes by request path, for this routing table
        self._ready = ready
        # Called before answering 404, so a Broker the controller just reported Ready is found
        # even if this process has not read that change yet: one refresh at a time, shared by
        # all the requests that came before it began, and at most _MAX_WAITING waiting.
        self._refresh = refresh
        self._refreshing: asyncio.Future[None] | None = None
        self._next_refresh: asyncio.Future[None] | None = None
        self._waiting = 0
        self._auth = auth  # None: every sender is allowed
        self._in_flight = 0
        self.max_body = settings.ingress_max_body_bytes
        self._max_in_flight = settings.ingress_max_in_flight
        self._sampler = _Sampler()
        # The webhook handshake (OPTIONS) approves these origins only (WebHook-Allowed-Origin).
        listed = settings.ingress_webhook_allowed_origins.split(",")
        origins = {origin.strip().lower() for origin in listed if origin.strip()}
        self._any_origin = "*" in origins
        self._origins = frozenset(o.encode("latin-1") for o in origins - {"*"})
        self._busy = f"{self._max_in_flight} requests in flight"  # why a 429, for its log line
        self._debug = log.isEnabledFor(logging.DEBUG)  # each accepted event is logged at DEBUG
        # The event type's label in the metrics: bounded, whatever types senders send.
        self._event_types = metrics.EventTypeLabels(
            settings.metrics_event_types(), settings.ingress_metrics_max_event_types
        )
        metrics.IN_FLIGHT.set_function(lambda: self._in_flight)
        self.event_types: EventTypeRecorder | None = None  # event discovery, when on
        self.tracer: IngressTracer | None = None  # spans (ingress.tracing), when tracing is on
        self.dedup: Deduplicator | None = None  # duplicate-free ingestion (ingress.dedup), when on

    @property
    def routes(self) -> Routes:
        return self._routes

    @routes.setter
    def routes(self, routes: Routes) -> None:
        self._routes = routes
        self._by_path = {}

    # -- the server's interface -------------------------------------------------------------

    def too_large(self, path: str, headers: Headers) -> Response:
        """The 413 for a body over the limit, counted against its Broker or Channel if known."""
        route = self._route(path, headers)
        error = f"body larger than {self.max_body} bytes"
        if route is not None:
            self._count(route, "", 413)
            self._refused(route, 413, error, headers=headers)
        return json_response(413, {"error": error})

    def refused(self, request: Request) -> Response | None:
        """The 401 or 403 for a request its head alone refuses, decided before the server reads
        the body (so an unauthenticated client cannot make it buffer one); else None."""
        if self._auth is None or request.method != "POST":
            return None
        route = self._route(request.path, request.headers)
        if route is None:
            return None  # a 404 once the body is read (after looking for the route again)
        refusal = self._denied(self._auth, request, route)
        request.authorized = refusal is None
        return refusal

    def unrouted(self, request: Request) -> Response | asyncio.Future[Response | None] | None:
        """Before the body of `request` is read: None if its path is served here; else its 404,
        now or (a future) after one refresh of the routes, which may find it after all (None).
        So no body is read for a path that nothing serves."""
        path = request.path
        if path in _ADMIN or self._route(path, request.headers) is not None:
            return None
        refreshed = self._after_refresh()
        if refreshed is None:
            return self._unknown(path)
        decided: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        refreshed.add_done_callback(partial(self._decide, request, decided))
        return decided

    def timed_out(self, request: Request | None) -> Response:
        """The 408 for a request that did not arrive whole in time (None: not even its head),
        counted against its Broker or Channel if known."""
        route = self._route(request.path, request.headers) if request is not None else None
        if route is not None:
            self._count(route, "", 408)
        return json_response(408, {"error": "the request did not arrive whole in time"})

    def disconnected(self, path: str, headers: Headers) -> None:
        """The client left before its request was whole; 499 (client closed request) in metrics."""
        route = self._route(path, headers)
        if route is not None:
            self._count(route, "", 499)

    def handle(self, request: Request, reply: Callable[[Response], None]) -> Response | None:
        """The answer to `request` if it is known now; else None, and `reply` is called with it
        (once Kafka has acknowledged, or refused)."""
        path = request.path
        if path in _ADMIN:
            return self._admin(path)
        route = self._route(path, request.headers)
        if route is None and (refreshed := self._after_refresh()) is not None:
            refreshed.add_done_callback(partial(self._handle_refreshed, request, reply))
            return None
        return self._handle_routed(request, route, reply)

    # -- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is handled by the service
        query = scope.get("query_string", b"")
        request = Request(scope["method"], scope["path"], scope["headers"], query=query)
        if declared_over(header_value(request.headers, b"content-length"), self.max_body):
            answer: Response | asyncio.Future[Response] = self.too_large(request.path, request.headers)
        else:
            try:
                request.body = await self._read_body(receive)
            except _Disconnected:
                self.disconnected(request.path, request.headers)
                return
            except _TooLarge:
                answer = self.too_large(request.path, request.headers)
            else:
                later: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
                answer = self.handle(request, later.set_result) or later
        response = answer if isinstance(answer, Response) else await answer
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- handling -----------------------------------------------------------------------------

    def _after_refresh(self) -> asyncio.Future[None] | None:
        """Done after a refresh of the routes that began after this call (cancelled if the
        service stops first); None without a refresh, or with _MAX_WAITING waiting already."""
        if self._refresh is None or self._waiting >= _MAX_WAITING:
            return None
        self._waiting += 1
        if self._next_refresh is None:
            self._next_refresh = asyncio.get_running_loop().create_future()
        refreshed = self._next_refresh
        if self._refreshing is None:
            self._start_refresh()
        return refreshed

    def _start_refresh(self) -> None:
        assert self._refresh is not None and self._next_refresh is not None
        refreshed, self._next_refresh = self._next_refresh, None
        self._refreshing = task = asyncio.ensure_future(self._refresh())
        task.add_done_callback(partial(self._refreshed, refreshed))

    def _refreshed(self, refreshed: asyncio.Future[None], task: asyncio.Future[None]) -> None:
        self._refreshing = None
        if task.cancelled():
            refreshed.cancel()
        else:
            if (exc := task.exception()) is not None:
                log.warning("refreshing the routes failed: %s", exc)
            refreshed.set_result(None)
        if self._next_refresh is not None:  # requests came during this one: another for them
            self._start_refresh()

    def _decide(
        self, request: Request, decided: asyncio.Future[Response | None], refreshed: asyncio.Future[None]
    ) -> None:
        self._waiting -= 1
        if decided.done():
            return
        if refreshed.cancelled():
            decided.set_result(_STOPPING)
        elif request.path in _ADMIN or self._route(request.path, request.headers) is not None:
            decided.set_result(None)
        else:
            decided.set_result(self._unknown(request.path))

    def _handle_refreshed(
        self, request: Request, reply: Callable[[Response], None], refreshed: asyncio.Future[None]
    ) -> None:
        self._waiting -= 1
        if refreshed.cancelled():
            reply(_STOPPING)
            return
        try:
            answer = self._handle_routed(request, self._route(request.path, request.headers), reply)
        except Exception:
            log.exception("handling %s %s", request.method, request.path)
            answer = json_response(500, {"error": "internal error; the event may not be stored"})
        if answer is not None:
            reply(answer)

    def _handle_routed(
        self, request: Request, route: Route | None, reply: Callable[[Response], None]
    ) -> Response | None:
        method = request.method
        if method == "OPTIONS":
            return self._options(request, route)
        # 404 before 405: a path that is no Broker or Channel (/metrics, say) is not found
        # whatever the method.
        if route is None:
            return self._unknown(request.path)
        if method != "POST":
            return json_response(
                405, {"error": f"method {method} not allowed; POST CloudEvents here"}, _ALLOW
            )
        headers = request.headers
        if self._auth is not None and not request.authorized:
            refusal = self._denied(self._auth, request, route)
            if refusal is not None:
                return refusal
        if self._in_flight >= self._max_in_flight:
            self._count(route, "", 429, request.started)
            self._refused(route, 429, self._busy, headers=headers)
            return json_response(429, {"error": "too many requests in flight; retry later"}, _RETRY)
        try:
            events = parse_http_request(headers, request.body, lowered=True)
        except InvalidEvent as exc:
            problems = [{"path": p.path, "message": p.message} for p in exc.problems]
            self._count(route, "", 400, request.started)
            first = exc.problems[0] if exc.problems else None
            reason = f"{first.path}: {first.message}" if first is not None else str(exc)
            if len(exc.problems) > 1:
                reason += f" (and {len(exc.problems) - 1} more problems)"
            self._refused(route, 400, reason, headers=headers)
            return json_response(400, {"error": "not a valid CloudEvent", "problems": problems})
        except UnsupportedMediaType as exc:
            self._count(route, "", 415, request.started)
            self._refused(route, 415, str(exc))
            return json_response(415, {"error": str(exc)})
        records = [to_kafka_record(event) for event in events]
        trace = header_value(headers, b"traceparent")
        if self.tracer is not None:  # tracing on: this request's spans, and the trace to store
            trace, reply = self.tracer.received(route, request.path, trace, events, request.started, reply)
        if trace is not None:
            for record in records:
                record.headers.append(("traceparent", trace))
        metrics.BATCH_SIZE.observe(len(records))
        self._in_flight += 1
        done = partial(self._stored, reply, route, events, request.started, time.perf_counter())
        if route.deduplication_window is not None and self.dedup is not None:
            self.dedup.submit(route.topic, events, records, done)
            return None
        self.sink.submit(route.topic, records, done)
        return None

    def _stored(
        self,
        reply: Callable[[Response], None],
        route: Route,
        events: list[CloudEvent],
        started: float,
        produce_started: float,
        error: KanalError | None,
        recorded: Sequence[CloudEvent] | None = None,
    ) -> None:
        """Kafka's answer (or deduplication's: `recorded` are then the events stored, the others
        duplicates, answered 202 all the same and not recorded as event types)."""
        self._in_flight -= 1
        now = time.perf_counter()
        if error is None:
            metrics.PRODUCE_LATENCY.observe(now - produce_started)
            response, code = ACCEPTED, "202"
            if self.event_types is not None:
                self.event_types.record(route, events if recorded is None else recorded)
            if self._debug:
                for event in events:
                    log.debug(
                        "accepted event_id=%r for %s %s/%s", event.id, route.kind, route.namespace, route.name
                    )
        elif error.retryable:
            self._refused(route, 503, f"cannot write to topic {route.topic}: {error}", events=events)
            response = json_response(503, {"error": f"cannot store the event now: {error}"}, _RETRY)
            code = "503"
        else:  # TooLarge: sending it again cannot help
            self._refused(route, 413, str(error), events=events)
            response = json_response(413, {"error": f"cannot store the event: {error}"})
            code = "413"
        kind, namespace, name = route.kind, route.namespace, route.name
        types = self._event_types
        # As _count, inline: through _count this path costs 2% more instructions per request.
        for event in events:  # none for an empty batch
            metrics.EVENTS.labels(kind, namespace, name, types[event.type], code).value += 1
        metrics.REQUEST_LATENCY.labels(kind, namespace, name, code).observe(now - started)
        reply(response)

    def _denied(self, auth: Authenticator, request: Request, route: Route) -> Response | None:
        denied = auth.check(request.headers, request.query, route)
        if denied is None:
            return None
        extra = [(b"www-authenticate", b'Bearer realm="kanal"')] if denied.status == 401 else []
        self._count(route, "", denied.status, request.started)
        self._refused(route, denied.status, denied.message, headers=request.headers)
        return json_response(denied.status, {"error": denied.message}, *extra)

    def _route(self, path: str, headers: Headers) -> Route | None:
        route = self._by_path.get(path)
        if route is not None:
            return route
        parts = path.strip("/").split("/")
        if len(parts) == 2:
            route = self._routes.get(("broker", parts[0], parts[1]))
        elif len(parts) == 3 and parts[0] == "channels":
            route = self._routes.get(("channel", parts[1], parts[2]))
        elif path == "/":  # by Host, so not remembered by path
            host = header_value(headers, b"host")
            found = channel_from_host(host.decode("latin-1")) if host else None
            return self._routes.get(("channel", found[0], found[1])) if found is not None else None
        # Only paths that found a route are remembered, and a bounded number of them.
        if route is not None and len(self._by_path) < _PATHS_MAX:
            self._by_path[path] = route
        return route

    def _options(self, request: Request, route: Route | None) -> Response:
        if route is None:
            return self._unknown(request.path)
        headers = request.headers
        extra = [_ALLOW]
        origin = header_value(headers, b"webhook-request-origin")
        if origin is not None and (self._any_origin or origin.lower() in self._origins):
            extra.append((b"webhook-allowed-origin", origin))
            rate = header_value(headers, b"webhook-request-rate")
            extra.append((b"webhook-allowed-rate", rate if rate is not None else b"*"))
        return Response(200, extra)

    def _admin(self, path: str) -> Response:
        ok = path == "/healthz" or self._ready()
        body = b"ok" if ok else b"not ready: Kafka unreachable or resource log not loaded"
        return Response(200 if ok else 503, [(b"content-type", b"text/plain")], body)

    def _refused(
        self,
        route: Route,
        status: int,
        reason: str,
        *,
        headers: Sequence[tuple[bytes, bytes]] | None = None,
        events: Sequence[CloudEvent] = (),
    ) -> None:
        """Log a refusal for operators (sampled: see _Sampler): the event's id when known, its
        Broker or Channel, the status and why; never the event itself. A 503 (Kafka cannot take
        writes) is a warning, the rest are the sender's problem and logged at INFO."""
        more = self._sampler.take((status, route.kind, route.namespace, route.name), time.monotonic())
        if more is None:
            return  # nothing more is worked out for a refusal not logged (a 429 flood, say)
        event_id = _ids(events) if events else _event_id(headers) if headers is not None else None
        log.log(
            logging.WARNING if status >= 500 else logging.INFO,
            "refused event_id=%s for %s %s/%s status=%d: %s%s",
            event_id or "-",
            route.kind,
            route.namespace,
            route.name,
            status,
            reason,
            more,
        )

    def _unknown(self, path: str) -> Response:
        """The 404 for a path no ready Broker or Channel has (logged, sampled)."""
        more = self._sampler.take((404,), time.monotonic())
        if more is not None:
            log.info("refused path=%r status=404: no ready Broker or Channel there%s", path[:200], more)
        return json_response(404, {"error": f"no ready Broker or Channel at {path}"})

    def _count(self, route: Route, event_type: str, code: int, started: float | None = None) -> None:
        code_label = str(code)
        metrics.EVENTS.labels(route.kind, route.namespace, route.name, event_type, code_label).inc()
        if started is not None:
            metrics.REQUEST_LATENCY.labels(route.kind, route.namespace, route.name, code_label).observe(
                time.perf_counter() - started
            )


def _event_id(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """A binary-mode request's event id as sent (for logs; shortened, quoted)."""
    value = header_value(headers, b"ce-id")
    return repr(value.decode("latin-1")[:100]) if value is not None else None


def _ids(events: Sequence[CloudEvent]) -> str:
    """The ids of a request's events, for logs: one, or the first few of a batch and how many."""
    ids = ",".join(repr(event.id[:100]) for event in events[:5])
    return ids if len(events) <= 5 else f"{ids},... ({len(events)} events)"


def declared_over(length: bytes | None, limit: int) -> bool:
    """Whether a Content-Length value alone says the body is over `limit` bytes (decided before
    reading it; a malformed value is left to the HTTP parser)."""
    return length is not None and length.isdigit() and int(length) > limit


def header_value(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case, as the server gives header names)."""
    for key, value in headers:
        if key == name:
            return value
    return None
