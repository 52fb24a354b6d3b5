"""Subscribers that answer as an attacker would, against real processes: raw-socket servers on
loopback behind Triggers of one Broker. Each event's final outcome is read from the dispatcher's
own counter (`kanal_dispatcher_events_total`), so no test waits on a sleep:

- a head without end (64k header fields of 1 KiB): refused at the client's bound, memory stays
  put, every attempt fails and the event is dead-lettered (it used to be read whole, +320 MiB);
- `103 Early Hints` before the `202`: one attempt, delivered (the 103 used to be the outcome,
  and the event was dead-lettered);
- a reply body over the limit (2 MiB): the attempt fails, the event is dead-lettered, no reply is
  stored (a cut-off reply used to be stored as if whole);
- a `202` with more bytes than its Content-Length, on kept-alive connections: each event sent
  once (the rest used to be read as the start of the next answer, failing it);
- an event whose datacontenttype is not Latin-1 (accepted in the JSON format): each attempt
  fails, the event is dead-lettered in the JSON format (it used to be dropped without either).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from support.cluster import KanalCluster
from support.events import post_event
from support.hostile import RawRequest, RawSubscriber, answering, raw_subscriber
from support.report import summary
from support.sinks import RecordingSink

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

NAMESPACE = "hostile"
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
FLOOD_FIELDS = 64 * 1024
FAST_RETRY = "retry: 2, backoffPolicy: linear, backoffDelay: PT0.05S, timeout: PT10S"


async def _flood(n: int, request: RawRequest, writer: asyncio.StreamWriter) -> None:
    """A head of FLOOD_FIELDS fields of 1 KiB each (64 MiB), then a whole answer, if still heard."""
    writer.write(b"HTTP/1.1 200 OK\r\n")
    field = b"X-Flood: " + b"f" * 1014 + b"\r\n"
    for _ in range(FLOOD_FIELDS // 64):
        writer.write(field * 64)
        await writer.drain()
    writer.write(b"Content-Length: 0\r\n\r\n")


def _big_reply() -> bytes:
    body = b'{"pad": "' + b"p" * (2 * 1024 * 1024) + b'"}'
    head = (
        b"HTTP/1.1 200 OK\r\nce-id: big-reply\r\nce-specversion: 1.0\r\nce-type: reply.big\r\n"
        b"ce-source: hostile\r\nce-partitionkey: replies\r\nContent-Type: application/json\r\n"
    )
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


ANSWERS = {
    "flood": _flood,
    "hints": answering(b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + ACCEPTED),
    "big-reply": answering(_big_reply()),
    "longer": answering(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Str"),
    "latin": answering(ACCEPTED),
}


@pytest.fixture
async def subscribers() -> AsyncIterator[dict[str, RawSubscriber]]:
    async with AsyncExitStack() as stack:
        yield {name: await stack.enter_async_context(raw_subscriber(a)) for name, a in ANSWERS.items()}


@pytest.fixture
async def sinks() -> AsyncIterator[tuple[RecordingSink, RecordingSink]]:
    """The dead-letter sink of every Trigger, and the subscriber of replies stored on the Broker."""
    started = (await RecordingSink().start(), await RecordingSink().start())
    try:
        yield started
    finally:
        for sink in started:
            await sink.close()


def _manifest(subscribers: dict[str, RawSubscriber], dead_letters: str, replies: str) -> str:
    out = "apiVersion: eventing.knative.dev/v1\nkind: Broker\n"
    out += f"metadata: {{name: default, namespace: {NAMESPACE}}}\n"
    for name, subscriber in subscribers.items():
        out += (
            f"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
            f"metadata: {{name: {name}, namespace: {NAMESPACE}}}\n"
            f"spec:\n  broker: default\n  filter: {{attributes: {{type: {name}}}}}\n"
            f"  subscriber: {{uri: '{subscriber.url}'}}\n"
            f"  delivery: {{{FAST_RETRY}, deadLetterSink: {{uri: '{dead_letters}'}}}}\n"
        )
    # Whatever reply is stored on the Broker reaches this one, in the order of its partition.
    return out + (
        f"---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n"
        f"metadata: {{name: replies, namespace: {NAMESPACE}, "
        "annotations: {kafka.eventing.knative.dev/delivery.order: ordered}}\n"
        f"spec:\n  broker: default\n  filter: {{attributes: {{type: reply.big}}}}\n"
        f"  subscriber: {{uri: '{replies}'}}\n"
    )


def _metrics(cluster: KanalCluster) -> str:
    url = f"http://127.0.0.1:{cluster.ports['dispatcher']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _count(text: str, metric: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _outcomes(cluster: KanalCluster, trigger: str, count: int, timeout: float = 60) -> dict[str, float]:
    """The Trigger's final outcomes, once `count` events have one."""
    deadline = time.monotonic() + timeout
    while True:
        text = await asyncio.to_thread(_metrics, cluster)
        found = {
            outcome: _count(text, "kanal_dispatcher_events_total", trigger=trigger, outcome=outcome)
            for outcome in ("delivered", "dead_lettered", "dropped")
        }
        if sum(found.values()) >= count:
            return {k: v for k, v in found.items() if v}
        assert time.monotonic() < deadline, f"{trigger}: {found} after {timeout}s"
        await asyncio.sleep(0.2)


async def _attempts(cluster: KanalCluster, trigger: str) -> dict[str, float]:
    """The Trigger's attempts to its subscriber, by code."""
    text = await asyncio.to_thread(_metrics, cluster)
    codes: dict[str, float] = {}
    for line in text.splitlines():
        mine = f'trigger="{trigger}"' in line and 'destination="subscriber"' in line
        if line.startswith("kanal_dispatcher_attempts_total{") and mine:
            code = re.search(r'code="([^"]*)"', line)
            assert code is not None
            codes[code.group(1)] = codes.get(code.group(1), 0) + float(line.rsplit(" ", 1)[1])
    return codes


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_hostile_subscribers(
    cluster: KanalCluster,
    subscribers: dict[str, RawSubscriber],
    sinks: tuple[RecordingSink, RecordingSink],
) -> None:
    """Every subscriber is tried whatever the others gave; what went wrong is listed at the end."""
    dead_letters, replies = sinks
    await cluster.apply(_manifest(subscribers, dead_letters.url, replies.url))
    url = cluster.broker_url(NAMESPACE, "default")
    dispatcher = cluster.processes["dispatcher"].pid
    wrong: dict[str, str] = {}

    def expect(finding: str, found: object, expected: object) -> None:
        if found != expected:
            wrong.setdefault(finding, f"{found!r}, expected {expected!r}")

    # A head without end: bounded, failed, dead-lettered.
    rss_before = _rss_mib(dispatcher)
    await post_event(url, "flood-1", "flood", "test")
    expect("flood", await _outcomes(cluster, "flood", 1), {"dead_lettered": 1})
    rss_growth = _rss_mib(dispatcher) - rss_before
    expect("flood", len(subscribers["flood"].requests), 3)
    expect("flood memory", f"{rss_growth:.0f} MiB" if rss_growth >= 32 else "bounded", "bounded")

    # An interim answer, then the real one: one attempt, delivered.
    await post_event(url, "hints-1", "hints", "test")
    expect("103", await _outcomes(cluster, "hints", 1), {"delivered": 1})
    expect("103", subscribers["hints"].ids(), ["hints-1"])

    # A reply over the limit: every attempt fails, nothing stored, dead-lettered.
    await post_event(url, "big-1", "big-reply", "test")
    expect("big reply", await _outcomes(cluster, "big-reply", 1), {"dead_lettered": 1})
    expect("big reply", len(subscribers["big-reply"].requests), 3)
    # A sentinel of the reply's type and partition key, sent after the outcome: a reply stored
    # (before the outcome) would reach the ordered replies Trigger before it.
    await post_event(url, "sentinel", "reply.big", "test", **{"ce-partitionkey": "replies"})
    await replies.wait_for(1, timeout=30)
    expect("big reply stored", replies.ids()[0], "sentinel")

    # More bytes than the Content-Length says, on kept-alive connections: each event sent once.
    for n in range(20):
        await post_event(url, f"longer-{n}", "longer", "test")
    expect("bytes after", await _outcomes(cluster, "longer", 20), {"delivered": 20})
    expect("bytes after", sorted(subscribers["longer"].ids()), sorted(f"longer-{n}" for n in range(20)))

    # A datacontenttype beyond Latin-1, accepted in the JSON format: retried, then dead-lettered
    # in the JSON format, which carries it; the subscriber never gets a byte.
    event = {
        "specversion": "1.0",
        "id": "latin-1",
        "type": "latin",
        "source": "test",
        "datacontenttype": "text/plain; charset=\u20ac",
        "data": "caf\u00e9",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, data=json.dumps(event), headers={"Content-Type": "application/cloudevents+json"}
        ) as response,
    ):
        assert response.status == 202
    expect("latin-1", await _outcomes(cluster, "latin", 1), {"dead_lettered": 1})
    expect("latin-1", await _attempts(cluster, "latin"), {"none": 3})
    expect("latin-1", subscribers["latin"].requests, [])

    by_id = {r.header("ce-id") or json.loads(r.body).get("id"): r for r in dead_letters.requests}
    expect("dead letters", sorted(by_id), ["big-1", "flood-1", "latin-1"])
    if "latin-1" in by_id:
        latin = json.loads(by_id["latin-1"].body)
        as_sent = (event["datacontenttype"], event["data"])
        expect("latin-1", (latin["datacontenttype"], latin["data"]), as_sent)
    summary(
        "hostile-subscribers",
        faults="a 64 MiB head, 103 before 202, a 2 MiB reply, bytes after the answer, a non-Latin-1 type",
        sent=25,
        delivered=21,
        dead_lettered=len(by_id),
        lost=0,
        duplicates=0,
        rss_growth_mib=round(rss_growth, 1),
        wrong=len(wrong),
    )
    assert not wrong, "\n".join(f"{finding}: {what}" for finding, what in wrong.items())
