"""The gate in front of a subscriber: waiters served first come, first served, one woken per
release, a Retry-After pause holding all of them, the time waited counted, and close ending every
wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from dispatcher.gate import Gate, GateClosed
from dispatcher.limiter import Limits, Signal


async def test_waiters_are_served_in_order_within_the_limit() -> None:
    gate = Gate(Limits(max_in_flight=2, adaptive=False))
    order: list[int] = []
    most = 0

    async def deliver(n: int) -> None:
        nonlocal most
        admitted = await gate.acquire()
        order.append(n)
        most = max(most, gate.in_flight)
        await asyncio.sleep(0.01)
        gate.release(admitted, Signal.OK)

    async with asyncio.TaskGroup() as tasks:
        for n in range(10):
            tasks.create_task(deliver(n))
            await asyncio.sleep(0)  # queue in this order
    assert order == list(range(10))
    assert most == 2
    assert gate.in_flight == 0
    assert gate.throttled > 0


async def test_a_retry_after_pauses_every_delivery() -> None:
    gate = Gate(Limits(max_in_flight=10, adaptive=False))
    admitted = await gate.acquire()
    gate.release(admitted, Signal.OVERLOAD, retry_after=0.3)
    began = time.monotonic()
    await asyncio.gather(*(gate.acquire() for _ in range(3)))
    assert time.monotonic() - began >= 0.28
    assert gate.in_flight == 3


async def test_the_rate_limit_paces_admissions() -> None:
    gate = Gate(Limits(max_in_flight=100, adaptive=False, rate=50.0, burst=1))
    began = time.monotonic()
    for _ in range(11):
        gate.release(await gate.acquire(), Signal.OK)
    assert time.monotonic() - began == pytest.approx(0.2, abs=0.1)


async def test_close_ends_every_wait_and_refuses_new_ones() -> None:
    gate = Gate(Limits(max_in_flight=1, adaptive=False))
    await gate.acquire()
    waiters = [asyncio.create_task(gate.acquire()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert gate.waiting == 3
    gate.close()
    for waiter in waiters:
        with pytest.raises(GateClosed):
            await waiter
    assert gate.waiting == 0
    with pytest.raises(GateClosed):
        await gate.acquire()


async def test_a_cancelled_waiter_passes_its_turn_on() -> None:
    gate = Gate(Limits(max_in_flight=1, adaptive=False))
    admitted = await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0.01)
    first.cancel()
    gate.release(admitted, Signal.OK)
    await asyncio.wait_for(second, 1.0)
    assert gate.in_flight == 1
    # An attempt cut short says nothing about the subscriber, but frees its place.
    gate.release(time.monotonic(), None)
    assert gate.in_flight == 0
