"""Events arrive as they were sent, through a Broker and through a Channel.

- ING-11: binary events with any content type (Thrift, XML, JSON) and structured events are
  accepted.
- DLV-03, SUB-04: every attribute (core, optional and extensions, a percent-encoded one
  included) reaches the subscriber with the value the ingress received, and the data is
  byte-identical; a structured event's JSON data is the same JSON value, and its `data_base64`
  the same bytes.
- FLT-09: a filter sees attributes only: an event whose data looks like the filtered attribute
  is not selected.
- DLV-04: a Trigger with `delivery.format: json` gets every event in structured mode: the same
  attributes, JSON data as the very bytes sent, other data base64-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest

from channel.events import STRUCTURED_CONTENT_TYPE
from support.cluster import KanalCluster
from support.events import post_event
from support.sinks import Received, RecordingSink

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

NOT_UTF8 = b"\x80\x81\xfe\xff\x00thrift\xc3"
OPTIONAL = {
    "subject": "orders/42",
    "time": "2026-12-06T10:00:00.123456789+01:00",
    "dataschema": "https://example.com/schemas/order.json",
    "exstring": "x",
}
# (id, headers, body) of binary-mode events, and what the subscriber must see of each: its ce-
# attributes (percent-decoded), content type and body.
BINARY = [
    (
        "thrift",
        {"content-type": "application/vnd.apache.thrift.binary", "ce-exint": "42"},
        NOT_UTF8,
        {**OPTIONAL, "exint": "42"},
    ),
    ("xml", {"content-type": "application/xml"}, b'<much wow="xml"/>', OPTIONAL),
    ("json", {"content-type": "application/json"}, b"{}", {}),
    (
        "percent",
        {"content-type": "text/plain; charset=utf-8", "ce-subject": "caf%C3%A9 50%25 %22q%22"},
        "café".encode(),
        {"subject": 'café 50% "q"'},
    ),
]
STRUCTURED_JSON: dict[str, Any] = {
    "specversion": "1.0",
    "id": "structured",
    "source": "fidelity",
    "type": "fidelity",
    "datacontenttype": "application/json",
    **OPTIONAL,
    "exint": 42,
    "exbool": True,
    # Looks like the attribute the `blind` Trigger filters on; filters never see data.
    "data": {"type": "in-data", "source": "in-data", "n": [1, 2.5, None]},
}
STRUCTURED_BYTES: dict[str, Any] = {
    "specversion": "1.0",
    "id": "structured-base64",
    "source": "fidelity",
    "type": "fidelity",
    "datacontenttype": "application/octet-stream",
    "data_base64": base64.b64encode(NOT_UTF8).decode(),
}


def _attributes(received: Received) -> dict[str, str]:
    return {name[3:]: unquote(value) for name, value in received.headers.items() if name.startswith("ce-")}


async def _send_all(url: str) -> None:
    for event_id, headers, body, _ in BINARY:
        optional = {f"ce-{name}": value for name, value in OPTIONAL.items() if event_id in ("thrift", "xml")}
        await post_event(url, event_id, "fidelity", "fidelity", body, **optional, **headers)
    async with aiohttp.ClientSession() as session:
        for event in (STRUCTURED_JSON, STRUCTURED_BYTES):
            async with session.post(
                url, data=json.dumps(event), headers={"content-type": "application/cloudevents+json"}
            ) as response:
                assert response.status == 202, await response.text()


def _check(received: list[Received]) -> None:
    by_id = {r.header("ce-id"): r for r in received}
    assert sorted(by_id) == sorted([e[0] for e in BINARY] + ["structured", "structured-base64"])
    assert len(received) == len(by_id), "an event was delivered twice"
    for event_id, headers, body, expected in BINARY:
        got = by_id[event_id]
        base = {"id": event_id, "specversion": "1.0", "type": "fidelity", "source": "fidelity"}
        assert _attributes(got) == {**base, **expected}, event_id
        assert got.header("content-type") == headers["content-type"], event_id
        assert got.body == body, event_id

    got = by_id["structured"]
    attributes = {k: v for k, v in STRUCTURED_JSON.items() if k not in ("data", "datacontenttype")}
    assert _attributes(got) == {**attributes, "exint": "42", "exbool": "true"}
    assert got.header("content-type") == "application/json"
    assert json.loads(got.body) == STRUCTURED_JSON["data"]

    got = by_id["structured-base64"]
    attributes = {k: v for k, v in STRUCTURED_BYTES.items() if k not in ("data_base64", "datacontenttype")}
    assert _attributes(got) == attributes
    assert got.header("content-type") == "application/octet-stream"
    assert got.body == NOT_UTF8


def _check_structured(received: list[Received]) -> None:
    """The same events, each as one JSON-format object."""
    assert {r.header("content-type") for r in received} == {STRUCTURED_CONTENT_TYPE}
    by_id = {json.loads(r.body)["id"]: r.body for r in received}
    assert len(by_id) == len(received) == len(BINARY) + 2
    for event_id, headers, body, expected in BINARY:
        got = json.loads(by_id[event_id])
        data_base64 = got.pop("data_base64", None)
        data = got.pop("data", None)
        base = {"id": event_id, "specversion": "1.0", "type": "fidelity", "source": "fidelity"}
        assert got == {**base, **expected, "datacontenttype": headers["content-type"]}, event_id
        if event_id == "json":
            assert data == {} and data_base64 is None
            assert b'"data":' + body in by_id[event_id]  # the bytes sent, not a re-serialisation
        elif event_id == "percent":
            assert data == body.decode() and data_base64 is None
        else:
            assert data is None and base64.b64decode(data_base64) == body, event_id
    got = json.loads(by_id["structured"])
    assert got["data"] == STRUCTURED_JSON["data"]
    assert {k: v for k, v in got.items() if k != "data"} == {
        **{k: v for k, v in STRUCTURED_JSON.items() if k != "data"},
        "exint": "42",
        "exbool": "true",
    }
    got = json.loads(by_id["structured-base64"])
    assert base64.b64decode(got.pop("data_base64")) == NOT_UTF8
    assert got == {k: v for k, v in STRUCTURED_BYTES.items() if k != "data_base64"}


async def test_events_arrive_as_sent_and_filters_see_attributes_only(cluster: KanalCluster) -> None:
    everything, blind, channel_sink, structured = [await RecordingSink().start() for _ in range(4)]
    try:
        await cluster.apply(f"""
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: default, namespace: fid}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: everything, namespace: fid}}
spec:
  broker: default
  subscriber: {{uri: "{everything.url}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: blind, namespace: fid}}
spec:
  broker: default
  filter: {{attributes: {{type: in-data}}}}
  subscriber: {{uri: "{blind.url}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: structured, namespace: fid}}
spec:
  broker: default
  filter: {{attributes: {{type: fidelity}}}}
  subscriber: {{uri: "{structured.url}"}}
  delivery: {{format: json}}
---
apiVersion: messaging.knative.dev/v1
kind: Channel
metadata: {{name: pipe, namespace: fid}}
---
apiVersion: messaging.knative.dev/v1
kind: Subscription
metadata: {{name: out, namespace: fid}}
spec:
  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: pipe}}
  subscriber: {{uri: "{channel_sink.url}"}}
""")
        broker_url = cluster.broker_url("fid", "default")
        await _send_all(broker_url)
        await _send_all(f"{cluster.ingress_url}/channels/fid/pipe")
        # The control: an event whose type is what `blind` selects, sent last.
        await post_event(broker_url, "control", "in-data", "fidelity")

        count = len(BINARY) + 2
        await everything.wait_for(count + 1)
        await channel_sink.wait_for(count)
        await blind.wait_for(1)
        await structured.wait_for(count)
        await asyncio.sleep(0.5)
        _check([r for r in everything.requests if r.header("ce-id") != "control"])
        _check(channel_sink.requests)
        _check_structured(structured.requests)
        assert blind.ids() == ["control"]
    finally:
        for sink in (everything, blind, channel_sink, structured):
            await sink.close()
