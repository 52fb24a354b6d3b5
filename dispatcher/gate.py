"""Where a Trigger's deliveries wait for its subscriber's `Limiter`: first come, first served.

Every attempt to a Trigger's subscriber passes its gate: `acquire` before the request, `release`
with what the answer said. Waiters queue in order and only the first asks the limiter again, when
an attempt finishes or when the wait the limiter named (a rate-limit token, a Retry-After pause)
is over; so a release wakes one task, not all of them. The gate also keeps the Trigger's figures
for its metrics: the limit, what is in flight, and the time deliveries spent waiting. `close`
(the consumer stopping, the Trigger deleted) ends every wait with `GateClosed`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from dispatcher.limiter import Limiter, Limits, Signal

__all__ = ["Gate", "GateClosed"]


class GateClosed(Exception):
    """The gate was closed while a delivery waited at it: the delivery is not finished."""


class Gate:
    """One subscriber's limiter, with the deliveries waiting for it."""

    def __init__(self, limits: Limits) -> None:
        self.limiter = Limiter(limits, time.monotonic())
        self._queue: deque[list[asyncio.Future[None] | None]] = deque()
        self._closed = False
        self.throttled = 0.0  # seconds deliveries waited here, in all
        self.on_wait: Callable[[float], None] | None = None  # told each wait's seconds (a metric)

    @property
    def in_flight(self) -> int:
        return self.limiter.in_flight

    @property
    def limit(self) -> int:
        return self.limiter.limit

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def configure(self, limits: Limits) -> None:
        self.limiter.configure(limits)
        self._wake_first()

    async def acquire(self) -> float:
        """Wait until the subscriber may get one more attempt; returns when it was admitted
        (`time.monotonic`), for `release`."""
        if self._closed:
            raise GateClosed
        now = time.monotonic()
        if not self._queue and self.limiter.admit(now) == 0.0:
            return now
        loop = asyncio.get_running_loop()
        began = now
        me: list[asyncio.Future[None] | None] = [None]
        self._queue.append(me)
        try:
            while True:
                if self._closed:
                    raise GateClosed
                wait = math.inf
                if self._queue[0] is me:
                    wait = self.limiter.admit(time.monotonic())
                    if wait == 0.0:
                        break
                future = me[0] = loop.create_future()
                if math.isinf(wait):
                    await future
                else:
                    handle = loop.call_later(wait, _resolve, future)
                    try:
                        await future
                    finally:
                        handle.cancel()
        finally:
            first = self._queue[0] is me
            self._queue.remove(me)
            if first:
                self._wake_first()
            now = time.monotonic()
            self.throttled += now - began
            if self.on_wait is not None:
                self.on_wait(now - began)
        return now

    def release(self, started: float, signal: Signal | None, retry_after: float | None = None) -> None:
        """An attempt admitted at `started` ended with `signal` (None: it was cut short, say
        nothing); `retry_after`: the pause the subscriber asked for, capped."""
        now = time.monotonic()
        if signal is None:
            self.limiter.abandon()
        else:
            self.limiter.release(now, started, now - started, signal, retry_after)
        self._wake_first()

    def close(self) -> None:
        """End every wait with GateClosed, and refuse new ones."""
        self._closed = True
        for waiter in self._queue:
            _resolve(waiter[0])

    def _wake_first(self) -> None:
        if self._queue:
            _resolve(self._queue[0][0])


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)
