"""How what happens on the wire becomes a delivery's outcome: the dispatcher with Kanal's HTTP
client against raw subscribers on loopback. An answer the client refuses (a reply over the size
limit), an event it cannot write (a datacontenttype beyond Latin-1) and a destination the policy
denies are failed attempts: retried, then dead-lettered, never dropped without one; an interim
answer before the real one is not the outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from channel.destinations import DestinationPolicy, parse_rules
from channel.events import CloudEvent
from dispatcher.delivery import MAX_RESPONSE_BYTES, HttpPoster
from dispatcher.dispatch import Dispatcher, Result, Source
from dispatcher.http import HttpClient
from dispatcher.retry import RetryPolicy
from support.dispatch import trigger_plan
from support.hostile import RawSubscriber, answering, raw_subscriber
from support.memory_sink import MemoryEventSink

RETRIES = 2
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
EVENT = {"id": "e1", "specversion": "1.0", "type": "t", "source": "s"}


@pytest.fixture
async def dead_letters() -> AsyncIterator[RawSubscriber]:
    async with raw_subscriber(answering(ACCEPTED)) as sink:
        yield sink


async def _deliver(
    subscriber: str,
    dead_letter: str,
    event: CloudEvent,
    *,
    policy: DestinationPolicy | None = None,
    reply_topic: str | None = None,
) -> tuple[Result, MemoryEventSink]:
    client = HttpClient(max_response=MAX_RESPONSE_BYTES, policy=policy)
    replies = MemoryEventSink()
    plan = trigger_plan(
        subscriber=subscriber,
        dead_letter=dead_letter,
        reply_topic=reply_topic,
        retry=RetryPolicy(retry=RETRIES, backoff_delay=0.001, jitter=0),
    )
    try:
        result = await Dispatcher(HttpPoster(client), replies, max_hops=10).deliver(
            plan, event, Source(partition=0, offset=0)
        )
    finally:
        await client.close()
    return result, replies


async def test_an_event_binary_mode_cannot_carry_is_retried_then_dead_lettered_as_json(
    dead_letters: RawSubscriber,
) -> None:
    """A datacontenttype beyond Latin-1 (it came in the JSON format) cannot be a Content-Type
    header: each attempt fails, and the dead letter goes in the JSON format, which carries it."""
    event = CloudEvent({**EVENT, "datacontenttype": "text/plain; charset=\u20ac"}, b"caf\xc3\xa9")
    async with raw_subscriber(answering(ACCEPTED)) as subscriber:
        result, _ = await _deliver(subscriber.url, dead_letters.url, event)
    assert result is Result.DEAD_LETTERED
    assert subscriber.requests == []  # nothing could be sent
    [dead] = dead_letters.requests
    assert dead.header("content-type") == "application/cloudevents+json"
    document = json.loads(dead.body)
    assert document["id"] == "e1" and document["datacontenttype"] == "text/plain; charset=\u20ac"
    assert document["data"] == "caf\u00e9"
    assert document["knativeerrordest"] == subscriber.url and "knativeerrorcode" not in document


async def test_a_reply_over_the_limit_is_a_failed_attempt_not_a_cut_off_reply(
    dead_letters: RawSubscriber,
) -> None:
    big = b"[" + b"1," * (MAX_RESPONSE_BYTES // 2) + b"1]"
    reply = (
        b"HTTP/1.1 200 OK\r\nce-id: r1\r\nce-specversion: 1.0\r\nce-type: reply\r\nce-source: sub\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    )
    async with raw_subscriber(answering(reply)) as subscriber:
        result, replies = await _deliver(
            subscriber.url, dead_letters.url, CloudEvent(EVENT, None), reply_topic="knative-broker.ns.default"
        )
    assert result is Result.DEAD_LETTERED
    assert len(subscriber.requests) == 1 + RETRIES
    assert replies.topics == {}  # nothing stored, let alone a cut-off reply
    assert len(dead_letters.requests) == 1


async def test_a_plain_answer_over_the_limit_is_its_status() -> None:
    """Not a reply: its body only ever feeds a dead letter's first KiB, so its status stands."""
    big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * MAX_RESPONSE_BYTES) + b"x" * (
        2 * MAX_RESPONSE_BYTES
    )
    async with raw_subscriber(answering(big)) as subscriber:
        result, _ = await _deliver(subscriber.url, "http://127.0.0.1:9/dead", CloudEvent(EVENT, None))
    assert result is Result.DELIVERED and len(subscriber.requests) == 1


async def test_an_early_hint_is_not_the_outcome(dead_letters: RawSubscriber) -> None:
    hinted = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n" + ACCEPTED
    async with raw_subscriber(answering(hinted)) as subscriber:
        result, _ = await _deliver(subscriber.url, dead_letters.url, CloudEvent(EVENT, None))
    assert result is Result.DELIVERED
    assert len(subscriber.requests) == 1 and dead_letters.requests == []


async def test_a_denied_subscriber_fails_like_a_connection_error(dead_letters: RawSubscriber) -> None:
    async with raw_subscriber(answering(ACCEPTED)) as subscriber:
        policy = DestinationPolicy(parse_rules(f"127.0.0.1:{subscriber.port}"))
        result, _ = await _deliver(subscriber.url, dead_letters.url, CloudEvent(EVENT, None), policy=policy)
        assert result is Result.DEAD_LETTERED
        assert subscriber.requests == [] and subscriber.connections == 0
        [dead] = dead_letters.requests
        # As for a refused connection: no status to report (D-10).
        assert dead.header("ce-knativeerrordest") == subscriber.url
        assert dead.header("ce-knativeerrorcode") is None

        # A dead-letter sink the policy denies is refused too: nothing reaches it.
        policy = DestinationPolicy(parse_rules(f"127.0.0.1:{subscriber.port},127.0.0.1:{dead_letters.port}"))
        result, _ = await _deliver(subscriber.url, dead_letters.url, CloudEvent(EVENT, None), policy=policy)
        assert result is Result.DROPPED
        assert len(dead_letters.requests) == 1


async def test_bytes_after_an_answer_are_not_the_next_answer(dead_letters: RawSubscriber) -> None:
    """A subscriber whose 202 says `Content-Length: 2` and sends more: were the connection
    reused, the rest would be read as the start of the next answer, which fails and is retried."""
    longer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 500 Str"
    async with raw_subscriber(answering(longer)) as subscriber:
        client = HttpClient()
        plan = trigger_plan(
            subscriber=subscriber.url,
            dead_letter=dead_letters.url,
            retry=RetryPolicy(retry=RETRIES, backoff_delay=0.001, jitter=0),
        )
        dispatcher = Dispatcher(HttpPoster(client), MemoryEventSink(), max_hops=10)
        results = []
        for n in range(5):
            event = CloudEvent({**EVENT, "id": f"e{n}"}, None)
            results.append(await dispatcher.deliver(plan, event, Source(partition=0, offset=n)))
        await client.close()
    assert results == [Result.DELIVERED] * 5
    # Each event sent once: no attempt failed.
    assert subscriber.ids() == [f"e{n}" for n in range(5)] and dead_letters.requests == []
