"""Subscriber protection: how many deliveries may be in flight to one subscriber, and how fast
they may start. Pure: the clock is an argument, nothing awaits (`dispatcher.gate` does the waiting).

Each Trigger (or Subscription) has one `Limiter` for its subscriber, made from its `Limits`: the
annotations `kanal.dev/max-in-flight`, `kanal.dev/rate-limit`, `kanal.dev/rate-limit-burst` and
`kanal.dev/adaptive-concurrency`, each defaulting to its global setting.

- The rate limit is a token bucket: `rate` tokens a second, at most `burst` kept; each attempt
  takes one.
- The in-flight limit adapts to the subscriber unless adaptation is off (then it is
  `max_in_flight`). It starts at `INITIAL_LIMIT` and, like TCP's congestion window, doubles each
  round trip while all is well until the first sign of overload, then grows by one per round
  trip (additive increase: 1/limit per answer) while answers come back in time and without
  error. It is cut to `OVERLOAD_FACTOR` of itself on a 429, a 503, a 408 or a timeout, and to
  `LATENCY_FACTOR` when latency rises (the recent average over `LATENCY_TOLERANCE` times the
  quietest latency seen, and `LATENCY_SLACK` above it, so loopback jitter is not a signal). Only
  one cut per round trip: an answer to a request sent before the last cut says nothing about the
  new limit. It grows only while used (a Trigger with little traffic keeps its limit), never
  beyond `max_in_flight` and never below 1.
- A `Retry-After` on a 429 or 503 pauses the subscriber, every delivery of this Trigger to it,
  for that long (capped by the caller, as retries are); the partition goes on for other Triggers.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

__all__ = [
    "INITIAL_LIMIT",
    "LATENCY_FACTOR",
    "LATENCY_SLACK",
    "LATENCY_TOLERANCE",
    "OVERLOAD_FACTOR",
    "Limiter",
    "Limits",
    "Signal",
    "signal_of",
]

INITIAL_LIMIT = 4
OVERLOAD_FACTOR = 0.7
LATENCY_FACTOR = 0.9
LATENCY_TOLERANCE = 2.0
LATENCY_SLACK = 0.02  # seconds
# How fast the recent average follows each answer, and how fast the quietest latency drifts up
# towards it (so a subscriber whose normal latency grew for good is not cut forever).
_RECENT_WEIGHT = 0.1
_BASE_DRIFT = 0.002
# A token refilled up to float rounding is a whole one (else a waiter would be told to wait 1e-17 s).
_WHOLE = 1.0 - 1e-9


class Signal(enum.Enum):
    """What one attempt's answer says about the subscriber's load."""

    OK = "ok"  # answered: a 2xx, or a 4xx about the event itself; its latency counts
    ERROR = "error"  # failed without a sign of load (500, refused, reset): no increase
    OVERLOAD = "overload"  # 429, 503, 408 or timed out: a cut


def signal_of(status: int | None, timed_out: bool) -> Signal:
    """The load signal of an attempt answered with `status` (None: no answer)."""
    if timed_out or status in (408, 429, 503):
        return Signal.OVERLOAD
    if status is None or status >= 500 or status < 200:
        return Signal.ERROR
    return Signal.OK


@dataclass(frozen=True, slots=True)
class Limits:
    """One subscriber's protection, compiled from its annotations and the global settings."""

    max_in_flight: int
    rate: float | None = None  # attempts a second; None: no rate limit
    burst: int = 1
    adaptive: bool = True

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("rate must be a positive number")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


class Limiter:
    """The in-flight limit, the rate limit and the pause of one subscriber."""

    __slots__ = (
        "_base",
        "_cut_at",
        "_growing",
        "_limit",
        "_limits",
        "_paused_until",
        "_recent",
        "_refilled",
        "_saturated_at",
        "_tokens",
        "in_flight",
    )

    def __init__(self, limits: Limits, now: float) -> None:
        self._limits = limits
        self._limit = float(
            min(limits.max_in_flight, INITIAL_LIMIT) if limits.adaptive else limits.max_in_flight
        )
        self._growing = True  # doubling each round trip until the first cut
        self._cut_at = -math.inf  # when the limit was last cut
        self._base: float | None = None  # the quietest latency seen (drifting up slowly)
        self._recent: float | None = None  # the recent average latency
        self._tokens = float(limits.burst)
        self._refilled = now
        self._paused_until = -math.inf
        self._saturated_at = -math.inf  # when the attempts in flight last reached the limit
        self.in_flight = 0

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def limit(self) -> int:
        """How many attempts may be in flight now."""
        return max(1, int(self._limit))

    def abandon(self) -> None:
        """An attempt admitted was cut short before an answer (a stop): it says nothing."""
        self.in_flight -= 1

    def configure(self, limits: Limits) -> None:
        """New limits (the Trigger's annotations or the settings changed); the adapted limit stays
        where it is if the new bounds allow."""
        if limits == self._limits:
            return
        self._limits = limits
        self._limit = (
            float(limits.max_in_flight) if not limits.adaptive else min(self._limit, limits.max_in_flight)
        )
        self._tokens = min(self._tokens, float(limits.burst))

    def paused(self, now: float) -> float:
        """Seconds the subscriber stays paused by a Retry-After (0 when it is not)."""
        return max(0.0, self._paused_until - now)

    def admit(self, now: float) -> float:
        """Admit one attempt now (0.0, counted in flight), or say how long to wait before asking
        again: seconds, or `math.inf` for until an attempt in flight finishes."""
        pause = self._paused_until - now
        if pause > 0:
            return pause
        if self.in_flight >= self.limit:
            return math.inf
        rate = self._limits.rate
        if rate is not None:
            burst = self._limits.burst
            self._tokens = min(float(burst), self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens < _WHOLE:
                return (1.0 - self._tokens) / rate
            self._tokens = max(0.0, self._tokens - 1.0)
        self.in_flight += 1
        if self.in_flight >= self.limit:
            self._saturated_at = now
        return 0.0

    def release(
        self, now: float, started: float, latency: float, signal: Signal, retry_after: float | None = None
    ) -> None:
        """An attempt admitted at `started` ended at `now` after `latency` seconds with `signal`;
        `retry_after`: the subscriber asked for that pause (already capped)."""
        self.in_flight -= 1
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if not self._limits.adaptive:
            return
        if signal is Signal.OVERLOAD:
            self._cut(started, now, OVERLOAD_FACTOR)
            return
        if signal is Signal.ERROR:
            return
        base = self._base
        if base is None or latency < base:
            base = latency
        else:
            base += (latency - base) * _BASE_DRIFT
        self._base = base
        recent = latency if self._recent is None else self._recent + (latency - self._recent) * _RECENT_WEIGHT
        self._recent = recent
        if recent > base * LATENCY_TOLERANCE and recent - base > LATENCY_SLACK:
            self._cut(started, now, LATENCY_FACTOR)
            return
        if self._saturated_at >= started:  # the limit was all in use while it was in flight
            grown = self._limit + (1.0 if self._growing else 1.0 / self._limit)
            self._limit = min(float(self._limits.max_in_flight), grown)

    def _cut(self, started: float, now: float, factor: float) -> None:
        if started < self._cut_at:
            return  # sent under the limit before the last cut: that cut answered it already
        self._limit = max(1.0, self._limit * factor)
        self._cut_at = now
        self._growing = False
