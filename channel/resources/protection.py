"""Subscriber protection declared on a Trigger or Subscription, as annotations Knative ignores.

    metadata:
      annotations:
        kanal.dev/max-in-flight: "20"         # at most 20 deliveries in flight to the subscriber
        kanal.dev/rate-limit: "200"           # at most 200 attempts a second (a decimal: "0.5")
        kanal.dev/rate-limit-burst: "20"      # of which up to 20 at once
        kanal.dev/adaptive-concurrency: "false"   # a fixed in-flight limit (adaptation is on by default)

Each annotation left out takes its global setting (`dispatcher_max_in_flight`,
`dispatcher_rate_limit`, `dispatcher_rate_limit_burst`, `dispatcher_adaptive_concurrency`). An
invalid value is refused when the resource is applied, naming the annotation; the dispatcher
(`dispatcher.limiter`) applies what is declared here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from channel.errors import Problem, ValidationError

__all__ = [
    "ADAPTIVE_CONCURRENCY",
    "ANNOTATIONS",
    "MAX_IN_FLIGHT",
    "MAX_IN_FLIGHT_BOUND",
    "RATE_LIMIT",
    "RATE_LIMIT_BOUND",
    "RATE_LIMIT_BURST",
    "Protection",
]

MAX_IN_FLIGHT: Final = "kanal.dev/max-in-flight"
RATE_LIMIT: Final = "kanal.dev/rate-limit"
RATE_LIMIT_BURST: Final = "kanal.dev/rate-limit-burst"
ADAPTIVE_CONCURRENCY: Final = "kanal.dev/adaptive-concurrency"
ANNOTATIONS: Final = (MAX_IN_FLIGHT, RATE_LIMIT, RATE_LIMIT_BURST, ADAPTIVE_CONCURRENCY)

# Each delivery in flight holds a task and a connection; beyond these, a value is a typo.
MAX_IN_FLIGHT_BOUND: Final = 10_000
RATE_LIMIT_BOUND: Final = 1_000_000.0

_INTEGER = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9})?|\.[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class Protection:
    """What a Trigger's or Subscription's annotations declare; None: the global setting."""

    max_in_flight: int | None = None
    rate_limit: float | None = None
    rate_limit_burst: int | None = None
    adaptive: bool | None = None

    @classmethod
    def from_annotations(
        cls, annotations: Mapping[str, str], where: str = "metadata.annotations"
    ) -> Protection:
        """The protection `annotations` declare; a ValidationError names every annotation that is
        not valid (`where` prefixes its path)."""
        problems: list[Problem] = []

        def problem(name: str, message: str) -> None:
            problems.append(Problem(f"{where}.{name}", message))

        max_in_flight = rate = burst = None
        adaptive = None
        text = annotations.get(MAX_IN_FLIGHT)
        if text is not None:
            max_in_flight = _integer(text, MAX_IN_FLIGHT_BOUND)
            if max_in_flight is None:
                problem(MAX_IN_FLIGHT, f"an integer from 1 to {MAX_IN_FLIGHT_BOUND} (got {text!r})")
        text = annotations.get(RATE_LIMIT)
        if text is not None:
            rate = _decimal(text)
            if rate is None:
                problem(
                    RATE_LIMIT,
                    f"events per second, a decimal above 0 and at most {RATE_LIMIT_BOUND:,.0f} "
                    f'such as "200" or "0.5" (got {text!r})',
                )
        text = annotations.get(RATE_LIMIT_BURST)
        if text is not None:
            burst = _integer(text, int(RATE_LIMIT_BOUND))
            if burst is None:
                problem(RATE_LIMIT_BURST, f"an integer from 1 to {int(RATE_LIMIT_BOUND)} (got {text!r})")
        text = annotations.get(ADAPTIVE_CONCURRENCY)
        if text is not None:
            if text not in ("true", "false"):
                problem(ADAPTIVE_CONCURRENCY, f'"true" or "false" (got {text!r})')
            else:
                adaptive = text == "true"
        if problems:
            raise ValidationError(problems)
        return cls(max_in_flight, rate, burst, adaptive)

    def is_empty(self) -> bool:
        return self == Protection()


def _integer(text: str, bound: int) -> int | None:
    if not _INTEGER.fullmatch(text.strip()):
        return None
    value = int(text)
    return value if 1 <= value <= bound else None


def _decimal(text: str) -> float | None:
    if not _DECIMAL.fullmatch(text.strip()):
        return None  # no exponents, signs, inf or nan
    value = float(text)
    return value if 0 < value <= RATE_LIMIT_BOUND else None
