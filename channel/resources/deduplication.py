"""Duplicate-free ingestion declared on a Broker or Channel, as an annotation Knative ignores.

    metadata:
      annotations:
        kanal.dev/deduplication-window: PT10M   # an ISO 8601 duration

With it, a second event with the same CloudEvents `source` and `id` as one stored within the
window is answered 202 and not stored again (`ingress.dedup`). The value is an ISO 8601
duration (the parser of DeliverySpec's durations), above zero and at most `MAX_WINDOW`: the
ingress reads the window's worth of the topic back when it starts, so a window of weeks is a
typo or a design that wants a database. An invalid value is refused when the resource is
applied, naming the annotation; a resource without the annotation is stored as always.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from channel.errors import ValidationError
from channel.resources.delivery import parse_iso8601_duration

__all__ = ["DEDUPLICATION_WINDOW", "MAX_WINDOW", "deduplication_window"]

DEDUPLICATION_WINDOW: Final = "kanal.dev/deduplication-window"
MAX_WINDOW: Final = 7 * 86400.0  # seconds: P7D


def deduplication_window(annotations: Mapping[str, str], where: str = "metadata.annotations") -> float | None:
    """The window `annotations` declare, in seconds, or None when they declare none; a
    ValidationError names the annotation when its value is not valid (`where` prefixes its path)."""
    text = annotations.get(DEDUPLICATION_WINDOW)
    if text is None:
        return None
    try:
        seconds = parse_iso8601_duration(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_WINDOW:
        raise ValidationError.single(
            f"{where}.{DEDUPLICATION_WINDOW}",
            f"an ISO 8601 duration above zero and at most P7D (7 days), such as PT10M (got {text!r})",
        )
    return seconds
