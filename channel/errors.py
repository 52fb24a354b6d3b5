"""Kanal's error tree: one root, with classification carried as data.

    KanalError
    ├── ValidationError (also ValueError)   a resource or request is invalid; lists every problem
    │   └── InvalidEvent                    a request does not carry a valid CloudEvent (HTTP 400)
    ├── UnsupportedMediaType                structured/batched content type Kanal cannot read (HTTP 415)
    ├── NotFound (also LookupError)         a resource does not exist (HTTP 404)
    ├── TooLarge                            Kafka cannot take a record this large (HTTP 413)
    ├── Conflict                            an update breaks an immutable field (HTTP 409)
    ├── Unavailable                         a dependency (Kafka, the controller) cannot answer now
    └── AccessDenied                        Kafka refused Kanal's credentials, its TLS or an operation

`retryable` says whether the same request may succeed later; callers decide on that
attribute, never on an ``isinstance`` chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AccessDenied",
    "Conflict",
    "InvalidEvent",
    "KanalError",
    "NotFound",
    "Problem",
    "TooLarge",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: where (a dotted path such as ``spec.filters[0].cesql``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class KanalError(Exception):
    """Root of every error Kanal raises on purpose."""

    retryable: bool = False


class ValidationError(KanalError, ValueError):
    """An input is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid")

    @classmethod
    def single(cls, path: str, message: str) -> ValidationError:
        return cls([Problem(path, message)])


class InvalidEvent(ValidationError):
    """A request or record does not carry a valid CloudEvent."""


class UnsupportedMediaType(KanalError):
    """A structured or batched CloudEvent in a format Kanal does not read."""


class NotFound(KanalError, LookupError):
    """A named resource does not exist."""


class TooLarge(KanalError):
    """Kafka refused a record as larger than its topic takes (`max.message.bytes`): sending the
    same record again cannot succeed."""


class Conflict(KanalError):
    """An update would change a field that is immutable."""


class Unavailable(KanalError):
    """A dependency cannot answer now; the same request may succeed later."""

    retryable = True


class AccessDenied(KanalError):
    """Kafka refused who Kanal is (authentication, TLS) or what it asked to do (a missing ACL):
    configuration, which no retry mends. A component stops with this one line."""
