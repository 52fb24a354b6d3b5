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

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = ["HEADER", "TraceParent", "keeps_root", "parse", "traces_url"]

HEADER: Final = "traceparent"
_HEX: Final = frozenset("0123456789abcdef")
_LENGTH: Final = 55  # 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A parsed `traceparent`: the trace, the sender's span in it, and whether it is sampled."""

    trace_id: int
    span_id: int
    sampled: bool

    def header(self) -> str:
        """As a version-00 `traceparent` header value."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def parse(value: str | bytes | None) -> TraceParent | None:
    """The `traceparent` header `value`, or None when it is absent or invalid (W3C Trace Context
    level 1: lower-case hex, no all-zero ids, version ff refused, a later version read as 00 if
    its first fields have 00's shape)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if len(text) < _LENGTH or (len(text) > _LENGTH and (text[:2] == "00" or text[_LENGTH] != "-")):
        return None
    version, trace, span, flags = text[:2], text[3:35], text[36:52], text[53:55]
    if text[2] != "-" or text[35] != "-" or text[52] != "-" or version == "ff":
        return None
    if not _HEX.issuperset(version + trace + span + flags):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, bool(int(flags, 16) & 1))


def keeps_root(ratio: float, draw: float) -> bool:
    """Whether a trace the ingress starts is recorded: `draw`, uniform in [0, 1), under `ratio`."""
    return draw < ratio


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of `endpoint`: as given when it has a path, else with /v1/traces
    (the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is given)."""
    if urlsplit(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"
