"""Retry decisions, compiled once per Trigger or Subscription from its DeliverySpec. Pure.

Which answers are retried (DLV-07): no response at all (refused, reset, timed out), 5xx, and
404, 408, 409, 429; 404 because a subscriber that is being rolled out answers 404 for a moment,
409 because it is a conflict the next attempt may not meet. 400, 401, 403 and every other 4xx
will fail again the same way; 1xx and 3xx are not success and redirects are never followed.

Backoff (D-06): retry n (1-based) waits `delay x n` (linear) or `delay x 2^n` (exponential),
capped at `max_backoff`, plus up to `jitter` x that of random extra so retries of many events
do not synchronise; never less than the formula. `Retry-After` on 429 and 503 is honoured
(D-14): the wait is max(backoff, min(Retry-After, retryAfterMax)); `retryAfterMax: PT0S` turns
it off; without `retryAfterMax` it is capped at `max_backoff`.
"""

from __future__ import annotations

import email.utils
import enum
from dataclasses import dataclass

from channel.resources.delivery import DeliverySpec, parse_iso8601_duration

__all__ = ["Outcome", "RetryPolicy", "classify_status", "parse_retry_after"]

DEFAULT_BACKOFF_DELAY = 0.2  # Knative's default when backoffDelay is unset
_RETRIED_4XX = frozenset({404, 408, 409, 429})


class Outcome(enum.Enum):
    SUCCESS = "success"
    RETRYABLE = "retryable"
    FATAL = "fatal"


def classify_status(status: int | None) -> Outcome:
    """What an attempt's answer means; None is no answer at all."""
    if status is None:
        return Outcome.RETRYABLE
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status >= 500 or status in _RETRIED_4XX:
        return Outcome.RETRYABLE
    return Outcome.FATAL


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry: int = 0
    backoff_policy: str = "exponential"
    backoff_delay: float = DEFAULT_BACKOFF_DELAY
    timeout: float = 30.0
    retry_after_max: float | None = None  # None: honoured, capped at max_backoff
    max_backoff: float = 60.0
    jitter: float = 0.2

    @classmethod
    def from_spec(
        cls,
        spec: DeliverySpec | None,
        *,
        default_timeout: float = 30.0,
        max_backoff: float = 60.0,
        jitter: float = 0.2,
    ) -> RetryPolicy:
        if spec is None:
            return cls(timeout=default_timeout, max_backoff=max_backoff, jitter=jitter)
        return cls(
            retry=spec.retry or 0,
            backoff_policy=spec.backoff_policy or "exponential",
            backoff_delay=(
                parse_iso8601_duration(spec.backoff_delay) if spec.backoff_delay else DEFAULT_BACKOFF_DELAY
            ),
            timeout=parse_iso8601_duration(spec.timeout) if spec.timeout else default_timeout,
            retry_after_max=parse_iso8601_duration(spec.retry_after_max) if spec.retry_after_max else None,
            max_backoff=max_backoff,
            jitter=jitter,
        )

    @property
    def attempts(self) -> int:
        return self.retry + 1

    def backoff(self, n: int, rand: float) -> float:
        """The wait before retry `n` (1-based); `rand` in [0, 1) picks the jitter."""
        base = self.backoff_delay * (n if self.backoff_policy == "linear" else 2**n)
        base = min(base, self.max_backoff)
        return base + base * self.jitter * rand

    def retry_after_cap(self) -> float:
        """The longest Retry-After honoured (0: none is)."""
        return self.max_backoff if self.retry_after_max is None else self.retry_after_max

    def next_delay(self, n: int, rand: float, retry_after: float | None) -> float:
        delay = self.backoff(n, rand)
        if retry_after is None:
            return delay
        return max(delay, min(retry_after, self.retry_after_cap()))
