"""The ingress ASGI application: CloudEvents over HTTP in, Kafka records out.

A bare ASGI callable rather than a framework, because the ingress is a hot path with one job:
parse the request (`channel.events`), find the Broker's topic (`routing`), write the records and
answer. Status codes: 202 stored (acks=all); 400 invalid event (JSON body listing every problem);
404 unknown or not-Ready Broker; 405 other methods (with Allow); 413 body over the limit (decided
from Content-Length before reading, or while reading); 415 structured content Kanal cannot read;
429 in-flight limit reached; 503 Kafka unavailable (both with Retry-After).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from channel.errors import InvalidEvent, Unavailable, UnsupportedMediaType
from channel.events import parse_http_request, to_kafka_record
from channel.producer import EventSink
from channel.settings import Settings
from ingress import metrics
from ingress.auth import AllowAll, Authenticator
from ingress.routing import Route, channel_from_host

__all__ = ["IngressApp", "Routes"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Routes = dict[tuple[str, str, str], Route]

_JSON = [(b"content-type", b"application/json")]
_ALLOW = (b"allow", b"POST, OPTIONS")


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    """The client went away before the whole body arrived: nothing of it may be stored."""


class IngressApp:
    """The ASGI callable. `routes` is replaced wholesale when the resource log changes."""

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
        self.routes: Routes = {}
        self._ready = ready
        # Called before answering 404, so a Broker the controller just reported Ready is found
        # even if this process has not read that change yet.
        self._refresh = refresh
        self._auth: Authenticator = auth or AllowAll()
        self._in_flight = 0
        self._max_body = settings.ingress_max_body_bytes
        self._max_in_flight = settings.ingress_max_in_flight
        metrics.IN_FLIGHT.set_function(lambda: self._in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is handled by the service
        path: str = scope["path"]
        if path in ("/healthz", "/readyz", "/metrics"):
            await self._admin(path, send)
            return
        started = time.perf_counter()
        route = self._route(path, scope["headers"])
        if route is None and self._refresh is not None:
            await self._refresh()
            route = self._route(path, scope["headers"])
        method: str = scope["method"]
        if method == "OPTIONS":
            await self._options(scope, send, route)
            return
        if method != "POST":
            await _respond(
                send,
                405,
                {"error": f"method {method} not allowed; POST CloudEvents here"},
                extra=[_ALLOW],
            )
            return
        if route is None:
            await _respond(send, 404, {"error": f"no ready Broker or Channel at {path}"})
            return
        denied = self._auth.check(scope["headers"], scope.get("query_string", b""), route)
        if denied is not None:
            extra = [(b"www-authenticate", b'Bearer realm="kanal"')] if denied.status == 401 else []
            await _respond(send, denied.status, {"error": denied.message}, extra=extra)
            self._count(route, "", denied.status, started)
            return
        if self._in_flight >= self._max_in_flight:
            await _respond(
                send,
                429,
                {"error": "too many requests in flight; retry later"},
                extra=[(b"retry-after", b"1")],
            )
            self._count(route, "", 429, started)
            return
        self._in_flight += 1
        try:
            code = await self._post(scope, receive, send, route)
        finally:
            self._in_flight -= 1
        metrics.REQUEST_LATENCY.labels(route.kind, route.namespace, route.name, str(code)).observe(
            time.perf_counter() - started
        )

    def _route(self, path: str, headers: list[tuple[bytes, bytes]]) -> Route | None:
        parts = path.strip("/").split("/")
        if len(parts) == 2:
            return self.routes.get(("broker", parts[0], parts[1]))
        if len(parts) == 3 and parts[0] == "channels":
            return self.routes.get(("channel", parts[1], parts[2]))
        if path == "/":
            host = _header(headers, b"host")
            found = channel_from_host(host.decode("latin-1")) if host else None
            if found is not None:
                return self.routes.get(("channel", found[0], found[1]))
        return None

    async def _post(self, scope: Scope, receive: Receive, send: Send, route: Route) -> int:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            body = await self._read_body(headers, receive)
        except _Disconnected:
            # No answer can reach the client; 499 (client closed request) in logs and metrics.
            self._count(route, "", 499)
            return 499
        except _TooLarge:
            await _respond(send, 413, {"error": f"body larger than {self._max_body} bytes"})
            self._count(route, "", 413)
            return 413
        try:
            events = parse_http_request(headers, body)
        except InvalidEvent as exc:
            problems = [{"path": p.path, "message": p.message} for p in exc.problems]
            await _respond(send, 400, {"error": "not a valid CloudEvent", "problems": problems})
            self._count(route, "", 400)
            return 400
        except UnsupportedMediaType as exc:
            await _respond(send, 415, {"error": str(exc)})
            self._count(route, "", 415)
            return 415
        records = [to_kafka_record(event) for event in events]
        trace = _header(headers, b"traceparent")
        if trace is not None:
            for record in records:
                record.headers.append(("traceparent", trace))
        metrics.BATCH_SIZE.observe(len(records))
        produce_started = time.perf_counter()
        try:
            await self.sink.send(route.topic, records)
        except Unavailable as exc:
            log.warning("write to %s failed: %s", route.topic, exc)
            await _respond(
                send,
                503,
                {"error": f"cannot store the event now: {exc}"},
                extra=[(b"retry-after", b"1")],
            )
            for event in events:
                self._count(route, event.type, 503)
            return 503
        metrics.PRODUCE_LATENCY.observe(time.perf_counter() - produce_started)
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        for event in events:
            self._count(route, event.type, 202)
        return 202

    async def _read_body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        length = _header(headers, b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _options(self, scope: Scope, send: Send, route: Route | None) -> None:
        if route is None:
            await _respond(send, 404, {"error": f"no ready Broker or Channel at {scope['path']}"})
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        extra = [_ALLOW, (b"content-length", b"0")]
        origin = _header(headers, b"webhook-request-origin")
        if origin is not None:
            extra.append((b"webhook-allowed-origin", origin))
            rate = _header(headers, b"webhook-request-rate")
            extra.append((b"webhook-allowed-rate", rate if rate is not None else b"*"))
        await send({"type": "http.response.start", "status": 200, "headers": extra})
        await send({"type": "http.response.body", "body": b""})

    async def _admin(self, path: str, send: Send) -> None:
        if path == "/metrics":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", CONTENT_TYPE_LATEST.encode())],
                }
            )
            await send({"type": "http.response.body", "body": generate_latest()})
            return
        ok = path == "/healthz" or self._ready()
        body = b"ok" if ok else b"not ready: Kafka unreachable or resource log not loaded"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if ok else 503,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _count(self, route: Route, event_type: str, code: int, started: float | None = None) -> None:
        code_label = str(code)
        metrics.EVENTS.labels(route.kind, route.namespace, route.name, event_type, code_label).inc()
        if started is not None:
            metrics.REQUEST_LATENCY.labels(route.kind, route.namespace, route.name, code_label).observe(
                time.perf_counter() - started
            )


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case, as ASGI servers give header names)."""
    for key, value in headers:
        if key == name:
            return value
    return None


async def _respond(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [*_JSON, (b"content-length", str(len(payload)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
