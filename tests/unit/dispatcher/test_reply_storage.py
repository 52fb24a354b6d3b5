"""What the dispatcher does when a subscriber's reply cannot be written back to the Broker.

The reply's topic is written through the same sink as the ingress's; a stand-in subscriber
answers 200 with a reply event, and the sink refuses it. Either way the whole delivery fails and
is retried under the Trigger's policy, then dead-lettered (RPL-06): while Kafka is away, and when
Kafka refuses the reply as larger than the topic takes (the subscriber may reply differently next
time), which the dead letter reports as the 413 the ingress would have answered.
"""

from __future__ import annotations

from channel.errors import KanalError, TooLarge, Unavailable
from channel.events import CloudEvent
from dispatcher.delivery import Attempt
from dispatcher.dispatch import Dispatcher, Result, Source
from dispatcher.plan import Plan
from dispatcher.retry import RetryPolicy
from support.dispatch import ScriptedPoster, trigger_plan
from support.memory_sink import MemoryEventSink

SUBSCRIBER = "http://127.0.0.1:9/subscriber"
DEAD_LETTER = "http://127.0.0.1:9/dead-letter"
RETRIES = 3
REPLY = Attempt(
    200,
    b"{}",
    (
        ("ce-id", "reply-1"),
        ("ce-specversion", "1.0"),
        ("ce-type", "greeting.reply"),
        ("ce-source", "subscriber"),
        ("content-type", "application/json"),
    ),
)


def _plan() -> Plan:
    return trigger_plan(
        subscriber=SUBSCRIBER,
        reply_topic="knative-broker.ns.default",
        dead_letter=DEAD_LETTER,
        retry=RetryPolicy(retry=RETRIES, backoff_delay=0.001, jitter=0),
    )


async def _deliver(refusal: KanalError) -> tuple[Result, ScriptedPoster]:
    # The subscriber replies to every event; the dead-letter sink takes what it gets.
    poster = ScriptedPoster(lambda url, event: REPLY if url == SUBSCRIBER else Attempt(202))
    replies = MemoryEventSink()
    replies.fail = refusal
    dispatcher = Dispatcher(poster, replies, max_hops=10)
    event = CloudEvent({"id": "1", "specversion": "1.0", "type": "greeting", "source": "s"}, b"{}")
    result = await dispatcher.deliver(_plan(), event, Source(partition=0, offset=0))
    return result, poster


async def test_a_reply_too_large_for_the_topic_retries_the_delivery_then_dead_letters_it() -> None:
    result, poster = await _deliver(TooLarge("Kafka refused an event of 3000000 bytes"))
    assert result is Result.DEAD_LETTERED
    assert [url for url, _ in poster.posts] == [SUBSCRIBER] * (1 + RETRIES) + [DEAD_LETTER]
    dead = poster.posts[-1][1]
    assert dead.attributes["knativeerrorcode"] == "413"
    assert dead.attributes["knativeerrordest"] == "knative-broker.ns.default"


async def test_a_reply_kafka_cannot_take_now_retries_the_delivery() -> None:
    result, poster = await _deliver(Unavailable("Kafka is away"))
    assert result is Result.DEAD_LETTERED
    assert [url for url, _ in poster.posts] == [SUBSCRIBER] * (1 + RETRIES) + [DEAD_LETTER]
    assert "knativeerrorcode" not in poster.posts[-1][1].attributes  # no response to report
