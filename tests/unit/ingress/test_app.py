"""The ingress ASGI app against an in-memory sink: routing, status codes, records written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY

from channel.errors import TooLarge, Unavailable
from channel.settings import Settings
from ingress.app import IngressApp, Request
from ingress.routing import Route, channel_from_host
from support.memory_sink import MemoryEventSink

BINARY = [
    (b"ce-id", b"1"),
    (b"ce-specversion", b"1.0"),
    (b"ce-type", b"greeting"),
    (b"ce-source", b"src"),
    (b"content-type", b"application/json"),
]


async def call(
    app: IngressApp,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    chunks: list[bytes] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    parts = chunks if chunks is not None else [body]
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""}
    await app(scope, receive, send)
    start = sent[0]
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    # Header values are octets (RFC 9110 obs-text included): latin-1 maps each to one character.
    return start["status"], {k.decode(): v.decode("latin-1") for k, v in start["headers"]}, body_out


@pytest.fixture
def sink() -> MemoryEventSink:
    return MemoryEventSink()


@pytest.fixture
def app(sink: MemoryEventSink) -> IngressApp:
    app = IngressApp(Settings(ingress_max_body_bytes=1000, ingress_max_in_flight=4), sink, ready=lambda: True)
    app.routes = {
        ("broker", "ns", "default"): Route("broker", "ns", "default", "topic-b"),
        ("channel", "ns", "chan"): Route("channel", "ns", "chan", "topic-c"),
    }
    return app


async def test_binary_event_is_written_and_accepted(app: IngressApp, sink: MemoryEventSink) -> None:
    status, _, _ = await call(app, "POST", "/ns/default", BINARY, b'{"a": 1}')
    assert status == 202
    [record] = sink.topics["topic-b"]
    assert record.value == b'{"a": 1}'
    assert dict(record.headers)["ce_type"] == b"greeting"
    assert "ce_time" not in dict(record.headers)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "expected"),
    [
        pytest.param("POST", "/ns/default", BINARY, b"{}", 202, id="accepted"),
        pytest.param("POST", "/ns/default/", BINARY, b"{}", 202, id="trailing-slash"),
        pytest.param("POST", "/channels/ns/chan", BINARY, b"{}", 202, id="channel-path"),
        pytest.param(
            "POST",
            "/ns/default",
            [(b"content-type", b"text/plain")],
            b"not an event",
            400,
            id="not-a-cloudevent",
        ),
        pytest.param("POST", "/ns/nope", BINARY, b"{}", 404, id="unknown-broker"),
        pytest.param("POST", "/", BINARY, b"{}", 404, id="root"),
        pytest.param("GET", "/ns/default", BINARY, b"", 405, id="get"),
        pytest.param("PUT", "/ns/default", BINARY, b"", 405, id="put"),
        pytest.param("DELETE", "/ns/default", BINARY, b"", 405, id="delete"),
        pytest.param("POST", "/ns/default", BINARY, b"x" * 1001, 413, id="too-large"),
        pytest.param(
            "POST",
            "/ns/default",
            [(b"content-type", b"application/cloudevents+avro")],
            b"{}",
            415,
            id="unsupported-format",
        ),
    ],
)
async def test_status_codes(
    app: IngressApp, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, expected: int
) -> None:
    status, response_headers, _ = await call(app, method, path, headers, body)
    assert status == expected
    if expected == 405:
        assert "POST" in response_headers["allow"]


async def test_too_large_decided_from_content_length(app: IngressApp, sink: MemoryEventSink) -> None:
    headers = [*BINARY, (b"content-length", b"5000")]
    status, _, _ = await call(app, "POST", "/ns/default", headers, b"")
    assert status == 413
    assert not sink.topics


async def test_too_large_while_streaming(app: IngressApp, sink: MemoryEventSink) -> None:
    status, _, _ = await call(app, "POST", "/ns/default", BINARY, chunks=[b"x" * 600, b"x" * 600])
    assert status == 413
    assert not sink.topics


async def test_invalid_event_lists_every_problem(app: IngressApp, sink: MemoryEventSink) -> None:
    status, _, body = await call(app, "POST", "/ns/default", [(b"ce-specversion", b"1.0")], b"")
    assert status == 400
    paths = {p["path"] for p in json.loads(body)["problems"]}
    assert {"id", "source", "type"} <= paths
    assert not sink.topics


async def test_kafka_unavailable_is_503_with_retry_after(app: IngressApp, sink: MemoryEventSink) -> None:
    sink.fail = Unavailable("down")
    status, headers, _ = await call(app, "POST", "/ns/default", BINARY, b"{}")
    assert status == 503
    assert headers["retry-after"] == "1"


async def test_an_event_too_large_for_its_topic_is_413_without_retry_after(
    app: IngressApp, sink: MemoryEventSink
) -> None:
    """Kafka refusing the record as larger than the topic takes is the sender's problem for good:
    413 with the reason, and no Retry-After (a 503 would have it sent again, forever)."""
    labels = {"kind": "broker", "namespace": "ns", "name": "default", "event_type": "greeting"}
    before = REGISTRY.get_sample_value("kanal_ingress_events_total", {**labels, "code": "413"}) or 0
    sink.fail = TooLarge("Kafka refused an event of 2000000 bytes as larger than topic t takes")
    status, headers, body = await call(app, "POST", "/ns/default", BINARY, b"{}")
    assert status == 413
    assert "retry-after" not in headers
    assert "2000000 bytes" in json.loads(body)["error"]
    after = REGISTRY.get_sample_value("kanal_ingress_events_total", {**labels, "code": "413"})
    assert after == before + 1


async def test_in_flight_limit_sheds_with_429(app: IngressApp) -> None:
    app._in_flight = 4  # as if four requests were waiting on Kafka
    status, headers, _ = await call(app, "POST", "/ns/default", BINARY, b"{}")
    assert status == 429
    assert "retry-after" in headers


def _with_origins(sink: MemoryEventSink, origins: str) -> IngressApp:
    app = IngressApp(Settings(ingress_webhook_allowed_origins=origins), sink, ready=lambda: True)
    app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic")}
    return app


@pytest.mark.parametrize(
    ("origins", "approved"),
    [
        ("", False),  # by default no origin is approved
        ("other.example.com", False),
        ("other.example.com, Sender.Example.com", True),
        ("*", True),
    ],
)
async def test_webhook_validation_approves_only_the_configured_origins(
    sink: MemoryEventSink, origins: str, approved: bool
) -> None:
    headers = [(b"webhook-request-origin", b"sender.example.com"), (b"webhook-request-rate", b"120")]
    status, response_headers, _ = await call(_with_origins(sink, origins), "OPTIONS", "/ns/default", headers)
    assert status == 200 and "POST" in response_headers["allow"]
    if approved:
        assert response_headers["webhook-allowed-origin"] == "sender.example.com"
        assert response_headers["webhook-allowed-rate"] == "120"
    else:
        assert "webhook-allowed-origin" not in response_headers
        assert "webhook-allowed-rate" not in response_headers


async def test_knative_channel_host_form(app: IngressApp, sink: MemoryEventSink) -> None:
    headers = [*BINARY, (b"host", b"chan-kn-channel.ns.svc.cluster.local")]
    status, _, _ = await call(app, "POST", "/", headers, b"{}")
    assert status == 202
    assert len(sink.topics["topic-c"]) == 1


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("chan-kn-channel.ns.svc.cluster.local", ("ns", "chan")),
        ("chan-kn-channel.ns.svc.cluster.local:80", ("ns", "chan")),
        ("a-b-kn-channel.my-ns.svc.example.org", ("my-ns", "a-b")),
        ("example.com", None),
        ("-kn-channel.ns.svc.cluster.local", None),
        ("chan-kn-channel.ns.local", None),
    ],
)
def test_channel_from_host(host: str, expected: tuple[str, str] | None) -> None:
    assert channel_from_host(host) == expected


async def test_health_and_readiness(sink: MemoryEventSink) -> None:
    ready = {"value": False}
    app = IngressApp(Settings(), sink, ready=lambda: ready["value"])
    assert (await call(app, "GET", "/healthz", []))[0] == 200
    assert (await call(app, "GET", "/readyz", []))[0] == 503
    ready["value"] = True
    assert (await call(app, "GET", "/readyz", []))[0] == 200


async def test_auth_401_and_403(sink: MemoryEventSink) -> None:
    from ingress.auth import StaticTokens

    app = IngressApp(
        Settings(),
        sink,
        ready=lambda: True,
        auth=StaticTokens([("good", ("broker/ns/default",)), ("other", ("broker/x/*",))]),
    )
    app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic-b")}
    status, headers, _ = await call(app, "POST", "/ns/default", BINARY, b"{}")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    status, _, _ = await call(
        app, "POST", "/ns/default", [*BINARY, (b"authorization", b"Bearer other")], b"{}"
    )
    assert status == 403
    status, _, _ = await call(
        app, "POST", "/ns/default", [*BINARY, (b"authorization", b"Bearer good")], b"{}"
    )
    assert status == 202
    assert len(sink.topics["topic-b"]) == 1


def test_a_request_that_timed_out_is_answered_408_and_counted(app: IngressApp) -> None:
    labels = {"kind": "broker", "namespace": "ns", "name": "default", "event_type": "", "code": "408"}
    before = REGISTRY.get_sample_value("kanal_ingress_events_total", labels) or 0.0
    response = app.timed_out(Request("POST", "/ns/default", BINARY))
    assert response.status == 408 and b"in time" in response.body
    assert REGISTRY.get_sample_value("kanal_ingress_events_total", labels) == before + 1
