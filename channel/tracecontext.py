"""W3C Trace Context as Kanal reads and writes it, and where a trace is sampled: pure, no OpenTelemetry.

The ingress stores the sender's `traceparent` with the records it writes, as sent, or (with
tracing on, for an event sent without a valid one) the context of a trace it starts and records.
Every delivery, retry, reply, dead letter, replay and redrive of that record reads it again, so
the sender's context stays the parent of every span Kanal makes for the event, and a sender's
sampling decision is Kanal's (parent-based sampling). Only a trace the ingress starts is sampled
here, at `tracing_sampling_ratio`: the decision is made once, at the edge, and carried in the
stored traceparent (sampled, or none), so the dispatcher never samples on its own and a trace is
whole or absent.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import urlsplit

__all__ = ["HEADER", "TraceParent", "flagged_sampled", "keeps_root", "parse", "traces_url"]

HEADER: Final = "traceparent"
# version-traceid-parentid-flags, lower-case hex; what may follow is checked apart.
_FORMAT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_LENGTH: Final = 55
_ODD: Final = frozenset("13579bdf")  # the flags' last hex digit when the sampled bit is set
_ODD_BYTES: Final = frozenset(b"13579bdf")


class TraceParent(NamedTuple):
    """A parsed `traceparent`: the trace, the sender's span in it, and whether it is sampled. A
    tuple, not a frozen dataclass: one is made per traced event, and a tuple is made faster."""

    trace_id: int
    span_id: int
    sampled: bool

    def header(self) -> str:
        """As a version-00 `traceparent` header value."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def flagged_sampled(value: str | bytes) -> bool:
    """Whether `value`'s flags say sampled, read from one character: the cheap test that most
    events, unsampled, stop at; one that passes is then parsed."""
    if len(value) < _LENGTH:
        return False
    return value[54] in (_ODD if isinstance(value, str) else _ODD_BYTES)


def parse(value: str | bytes | None) -> TraceParent | None:
    """The `traceparent` header `value`, or None when it is absent or invalid (W3C Trace Context
    level 1: lower-case hex, no all-zero ids, version ff refused, a later version read as 00 if
    its first fields have 00's shape)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    match = _FORMAT.match(text)
    if match is None or match[1] == "ff":
        return None
    if len(text) > _LENGTH and (match[1] == "00" or text[_LENGTH] != "-"):
        return None
    trace_id, span_id = int(match[2], 16), int(match[3], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, bool(int(match[4], 16) & 1))


def keeps_root(ratio: float, draw: float) -> bool:
    """Whether a trace the ingress starts is recorded: `draw`, uniform in [0, 1), under `ratio`."""
    return draw < ratio


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of `endpoint`: as given when it has a path, else with /v1/traces
    (the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is given)."""
    if urlsplit(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"
