"""Delivery end to end: retry counts and backoff, which codes are retried, dead-letter extensions,
Retry-After, replies (a 202 never is one), and visible drops. Real processes, real sinks."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from support.cluster import KanalCluster
from support.sinks import Received, RecordingSink
from support.tls import self_signed

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None):
    return lambda n, r: web.Response(status=status, body=body, headers=headers or {})


def trigger(name: str, event_type: str, sink: str, delivery: str = "") -> str:
    return (
        f"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: d}}\n"
        f"spec:\n  broker: default\n  filter: {{attributes: {{type: {event_type}}}}}\n"
        f"  subscriber: {{uri: '{sink}'}}\n" + (f"  delivery: {delivery}\n" if delivery else "")
    )


async def post(cluster: KanalCluster, event_type: str, event_id: str, body: bytes = b'{"k":1}') -> None:
    headers = {
        "ce-id": event_id,
        "ce-specversion": "1.0",
        "ce-type": event_type,
        "ce-source": "test",
        "content-type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(cluster.broker_url("d", "default"), data=body, headers=headers) as response,
    ):
        assert response.status == 202


BROKER = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: d}\n"


@pytest.mark.parametrize(
    ("status", "attempts"),
    [
        (503, 3),
        (500, 3),
        (404, 3),
        (408, 3),
        (409, 3),
        (429, 3),
        (400, 1),
        (401, 1),
        (403, 1),
        (410, 1),
        (422, 1),
        (302, 1),
    ],
)
async def test_retried_codes_and_dead_letter(cluster: KanalCluster, status: int, attempts: int) -> None:
    headers = {"Location": "http://127.0.0.1:1/elsewhere"} if status == 302 else {}
    sink = await RecordingSink(answer(status, b'{ "message": "catastrophic failure" }', headers)).start()
    dls = await RecordingSink().start()
    try:
        await cluster.apply(
            BROKER
            + trigger(
                "t",
                "x",
                sink.url,
                f"{{retry: 2, backoffDelay: PT0.05S, deadLetterSink: {{uri: '{dls.url}'}}}}",
            )
        )
        await post(cluster, "x", "ev1", b"original-bytes")
        [dead] = await dls.wait_for(1)
        await asyncio.sleep(0.5)
        assert len(sink.requests) == attempts
        assert dead.header("ce-id") == "ev1" and dead.body == b"original-bytes"
        assert dead.header("ce-knativeerrordest") == sink.url
        assert dead.header("ce-knativeerrorcode") == str(status)
        assert (
            base64.b64decode(dead.header("ce-knativeerrordata") or "")
            == b'{ "message": "catastrophic failure" }'
        )
        assert dead.header("kn-namespace") == "d"
    finally:
        await sink.close()
        await dls.close()


async def test_backoff_timeout_and_unreachable(cluster: KanalCluster) -> None:
    exp = await RecordingSink(answer(500)).start()

    async def slow(n: int, request: Received) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(status=202)

    slow_sink = await RecordingSink(slow).start()
    dls = await RecordingSink().start()
    try:
        await cluster.apply(
            BROKER
            + trigger("exp", "exp", exp.url, "{retry: 3, backoffPolicy: exponential, backoffDelay: PT0.2S}")
            + trigger(
                "slow",
                "slow",
                slow_sink.url,
                f"{{retry: 1, timeout: PT0.5S, deadLetterSink: {{uri: '{dls.url}'}}}}",
            )
            + trigger(
                "gone",
                "gone",
                "http://127.0.0.1:1/",
                f"{{retry: 1, backoffDelay: PT0.05S, deadLetterSink: {{uri: '{dls.url}'}}}}",
            )
        )
        await post(cluster, "exp", "e1")
        await post(cluster, "slow", "s1")
        await post(cluster, "gone", "g1")
        await exp.wait_for(4, timeout=30)
        gaps = [b.at - a.at for a, b in zip(exp.requests, exp.requests[1:], strict=False)]
        assert gaps[0] >= 0.39 and gaps[1] >= 0.79 and gaps[2] >= 1.59, gaps  # 0.2 x 2^n, n = 1..3
        dead = {r.header("ce-id"): r for r in await dls.wait_for(2, timeout=30)}
        assert len(slow_sink.requests) == 2  # timed out twice
        assert dead["s1"].header("ce-knativeerrorcode") is None  # no response, no code (D-10)
        assert dead["g1"].header("ce-knativeerrordest") == "http://127.0.0.1:1/"
        assert dead["g1"].header("ce-knativeerrorcode") is None
    finally:
        for s in (exp, slow_sink, dls):
            await s.close()


async def test_retry_after_is_honoured(cluster: KanalCluster) -> None:
    def flaky(n: int, r: Received) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "2"}) if n == 1 else web.Response(status=202)

    sink = await RecordingSink(flaky).start()
    try:
        await cluster.apply(
            BROKER + trigger("t", "x", sink.url, "{retry: 1, backoffDelay: PT0.1S, retryAfterMax: PT5S}")
        )
        await post(cluster, "x", "r1")
        first, second = await sink.wait_for(2, timeout=20)
        assert second.at - first.at >= 1.9
    finally:
        await sink.close()


async def test_replies(cluster: KanalCluster) -> None:
    def replier(n: int, r: Received) -> web.Response:
        if r.header("ce-type") == "a":
            return web.Response(
                status=200,
                body=b'{"reply":1}',
                headers={
                    "ce-id": "reply-1",
                    "ce-specversion": "1.0",
                    "ce-type": "b",
                    "ce-source": "replier",
                    "content-type": "application/json",
                },
            )
        return web.Response(
            status=202,
            headers={  # a 202 is never a reply, whatever its headers
                "ce-id": "not-a-reply",
                "ce-specversion": "1.0",
                "ce-type": "b",
                "ce-source": "x",
            },
        )

    first = await RecordingSink(replier).start()
    second = await RecordingSink(answer(200, b'{"ok": true}', {"content-type": "application/json"})).start()
    try:
        await cluster.apply(
            BROKER
            + trigger("t1", "a", first.url)
            + trigger("t1c", "c", first.url)
            + trigger("t2", "b", second.url)
        )
        await post(cluster, "a", "orig-a")
        await post(cluster, "c", "orig-c")
        [reply] = await second.wait_for(1)
        await asyncio.sleep(1.0)
        assert reply.header("ce-id") == "reply-1" and reply.header("ce-type") == "b"
        assert reply.body == b'{"reply":1}'
        assert reply.header("kanal-hops") is None and not any(k.startswith("ce-kanal") for k in reply.headers)
        assert [r.header("ce-id") for r in second.requests] == ["reply-1"]  # not the 202's
        assert sorted(first.ids()) == ["orig-a", "orig-c"]  # a plain 200 body is no failure either
    finally:
        await first.close()
        await second.close()


async def test_drop_without_dead_letter_sink_is_counted(cluster: KanalCluster) -> None:
    """DLV-25: a drop is visible to the operator, in the metrics and the log, whether the Trigger
    has no dead-letter sink or its dead-letter sink fails too."""
    sink = await RecordingSink(answer(400)).start()
    failing_dls = await RecordingSink(answer(500)).start()
    try:
        await cluster.apply(
            BROKER
            + trigger("t", "x", sink.url)
            + trigger(
                "t2",
                "y",
                sink.url,
                f"{{retry: 1, backoffDelay: PT0.05S, deadLetterSink: {{uri: '{failing_dls.url}'}}}}",
            )
        )
        await post(cluster, "x", "lost1")
        await post(cluster, "y", "lost2")
        await failing_dls.wait_for(2)  # retry: 1 applies to the dead-letter sink too
        metrics_url = f"http://127.0.0.1:{cluster.ports['dispatcher']}/metrics"
        dropped = [
            f'kanal_dispatcher_events_total{{kind="trigger",namespace="d",outcome="dropped",parent="default",'
            f'trigger="{name}"}} 1.0'
            for name in ("t", "t2")
        ]
        for _ in range(50):
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(metrics_url).read().decode())
            if all(line in text for line in dropped):
                break
            await asyncio.sleep(0.1)
        assert all(line in text for line in dropped), text
        log = cluster.tail("dispatcher")
        assert "lost1" in log and "lost2" in log  # the warnings name the events
        assert failing_dls.ids() == ["lost2", "lost2"]
    finally:
        await sink.close()
        await failing_dls.close()


async def test_a_destination_s_ca_certs_are_trusted(cluster: KanalCluster, tmp_path: Path) -> None:
    """An https:// subscriber whose certificate chains to the Trigger's `subscriber.CACerts` is
    delivered to; the same subscriber without them fails verification and the event goes to the
    dead-letter sink, naming no status (no answer)."""
    certfile, keyfile = self_signed(tmp_path)
    pem = await asyncio.to_thread(Path(certfile).read_text)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certfile, keyfile)
    sink = await RecordingSink(tls=server).start()
    dls = await RecordingSink().start()
    try:
        trusted = trigger("trusted", "x", sink.url).replace(
            f"  subscriber: {{uri: '{sink.url}'}}\n",
            f"  subscriber:\n    uri: '{sink.url}'\n    CACerts: {json.dumps(pem)}\n",
        )
        assert "CACerts" in trusted
        untrusted = trigger("untrusted", "y", sink.url, f"{{retry: 0, deadLetterSink: {{uri: '{dls.url}'}}}}")
        await cluster.apply(BROKER + trusted + untrusted)
        await post(cluster, "x", "over-tls")
        await post(cluster, "y", "not-trusted")
        [received] = await sink.wait_for(1)
        assert received.header("ce-id") == "over-tls"
        [dead] = await dls.wait_for(1)
        assert dead.header("ce-id") == "not-trusted"
        assert dead.header("ce-knativeerrordest") == sink.url
        assert "ce-knativeerrorcode" not in dead.headers
        assert sink.ids() == ["over-tls"]
    finally:
        await sink.close()
        await dls.close()
