"""Arbitrary requests to the ingress app: only client-error codes or 202, never an exception or a 5xx."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from test_app import call

from channel.settings import Settings
from ingress.app import IngressApp
from ingress.routing import Route
from support.memory_sink import MemoryEventSink

header_names = st.one_of(
    st.sampled_from(
        [
            b"ce-id",
            b"ce-source",
            b"ce-type",
            b"ce-specversion",
            b"content-type",
            b"ce-time",
            b"content-length",
            b"ce-partitionkey",
            b"host",
            b"traceparent",
        ]
    ),
    st.binary(max_size=30),
)
content_types = st.sampled_from(
    [
        b"application/json",
        b"application/cloudevents+json",
        b"application/cloudevents-batch+json",
        b"text/plain",
        b"application/cloudevents+avro",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "OPTIONS", "DELETE"]),
    path=st.sampled_from(["/ns/default", "/ns/default/", "/", "/a/b/c", "/channels/ns/c", "/ns"]),
    headers=st.lists(st.tuples(header_names, st.binary(max_size=60)), max_size=10),
    content_type=content_types,
    body=st.binary(max_size=3000),
)
def test_never_a_server_error(
    method: str, path: str, headers: list[tuple[bytes, bytes]], content_type: bytes, body: bytes
) -> None:
    app = IngressApp(Settings(ingress_max_body_bytes=2048), MemoryEventSink(), ready=lambda: True)
    app.routes = {("broker", "ns", "default"): Route("broker", "ns", "default", "topic")}
    status, _, _ = asyncio.run(call(app, method, path, [(b"content-type", content_type), *headers], body))
    assert status in {200, 202, 400, 404, 405, 413, 415}
