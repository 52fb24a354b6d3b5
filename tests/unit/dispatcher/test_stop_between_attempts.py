"""A stop does not wait out a delivery's backoff.

A Trigger's backoff can be minutes long. A dispatcher told to stop (SIGTERM in a rolling update)
interrupts a delivery waiting to try again at once: the delivery raises Interrupted, so its
record is not committed, and the failed attempts it made stay recorded for the partition's next
owner, which continues the count instead of starting again.
"""

from __future__ import annotations

import asyncio

import pytest

from channel.events import CloudEvent
from dispatcher.attempts import MemoryAttempts
from dispatcher.delivery import Attempt
from dispatcher.dispatch import Dispatcher, Interrupted, Result, Source
from dispatcher.plan import Plan
from dispatcher.retry import RetryPolicy
from support.dispatch import ScriptedPoster, trigger_plan
from support.memory_sink import MemoryEventSink

SUBSCRIBER = "http://127.0.0.1:9/subscriber"
EVENT = CloudEvent({"id": "1", "specversion": "1.0", "type": "t", "source": "s"}, b"{}")
SOURCE = Source(partition=0, offset=7)
# Far longer than any test waits: only an interruption ends these backoffs in time.
HOUR = 3600.0


def _poster(*statuses: int) -> ScriptedPoster:
    """Answers each POST with the next of `statuses`."""
    left = list(statuses)
    return ScriptedPoster(lambda url, event: Attempt(left.pop(0)))


def _plan(backoff: float) -> Plan:
    return trigger_plan(subscriber=SUBSCRIBER, retry=RetryPolicy(retry=5, backoff_delay=backoff, jitter=0))


async def test_a_stop_interrupts_the_backoff_and_keeps_the_count() -> None:
    poster = _poster(500)
    attempts = MemoryAttempts()
    dispatcher = Dispatcher(poster, MemoryEventSink(), max_hops=10, attempts=attempts)
    stop = asyncio.Event()
    delivery = asyncio.create_task(dispatcher.deliver(_plan(HOUR), EVENT, SOURCE, stop=stop))
    await asyncio.wait_for(poster.posted.wait(), 5)
    await asyncio.sleep(0.01)  # the delivery is now in its backoff
    assert not delivery.done()
    stop.set()
    with pytest.raises(Interrupted):
        await asyncio.wait_for(delivery, 5)  # an hour's backoff, interrupted
    assert len(poster.posts) == 1
    assert attempts.get("group", SOURCE.partition, SOURCE.offset) == 1  # kept for the next owner


async def test_the_next_owner_continues_the_count() -> None:
    attempts = MemoryAttempts()
    first = Dispatcher(_poster(500), MemoryEventSink(), max_hops=10, attempts=attempts)
    stop = asyncio.Event()
    delivery = asyncio.create_task(first.deliver(_plan(HOUR), EVENT, SOURCE, stop=stop))
    await asyncio.sleep(0.05)
    stop.set()
    with pytest.raises(Interrupted):
        await asyncio.wait_for(delivery, 5)

    poster = _poster(200)
    second = Dispatcher(poster, MemoryEventSink(), max_hops=10, attempts=attempts)
    result = await asyncio.wait_for(second.deliver(_plan(0.001), EVENT, SOURCE), 5)
    assert result is Result.DELIVERED
    assert len(poster.posts) == 1
    assert attempts.get("group", SOURCE.partition, SOURCE.offset) == 0  # final: cleared


async def test_a_stopped_owner_does_not_start_a_delivery_it_would_wait_for() -> None:
    """The next owner of an event mid-retry waits its backoff before the next attempt; a stop
    then interrupts that wait too, with no attempt made."""
    attempts = MemoryAttempts()
    await attempts.record("group", SOURCE.partition, SOURCE.offset, 2)
    poster = _poster()
    dispatcher = Dispatcher(poster, MemoryEventSink(), max_hops=10, attempts=attempts)
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(Interrupted):
        await asyncio.wait_for(dispatcher.deliver(_plan(HOUR), EVENT, SOURCE, stop=stop), 5)
    assert len(poster.posts) == 0
    assert attempts.get("group", SOURCE.partition, SOURCE.offset) == 2


async def test_without_a_stop_the_retries_run_their_course() -> None:
    poster = _poster(500, 503, 200)
    attempts = MemoryAttempts()
    dispatcher = Dispatcher(poster, MemoryEventSink(), max_hops=10, attempts=attempts)
    result = await dispatcher.deliver(_plan(0.001), EVENT, SOURCE, stop=asyncio.Event())
    assert result is Result.DELIVERED
    assert len(poster.posts) == 3
    assert attempts.get("group", SOURCE.partition, SOURCE.offset) == 0
