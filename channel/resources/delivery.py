"""Knative's DeliverySpec: retries, backoff, timeout, Retry-After cap and the dead-letter sink.

Validated when applied (DLV-12): `retry` >= 0, `backoffPolicy` linear or exponential, durations
in ISO 8601 (`PT0.2S`, `PT1M30S`, `P1D`), `timeout` > 0, `retryAfterMax` >= 0, `format` json or
binary. Which spec applies is decided wholesale (DLV-15, D-11): a Trigger or Subscription with
any delivery field replaces its Broker's or Channel's delivery entirely; fields never merge.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from channel.resources.destination import Destination

__all__ = ["DeliverySpec", "effective_delivery", "parse_iso8601_duration"]

_DURATION = re.compile(
    r"P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def parse_iso8601_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration such as `PT0.2S`; ValueError with the reason otherwise."""
    match = _DURATION.fullmatch(text.strip().upper()) if text else None
    if match is None or not any(match.groupdict().values()) or text.upper().endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (for example PT0.2S, PT2S, PT1M30S)")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["days"] * 86400 + parts["hours"] * 3600 + parts["minutes"] * 60 + parts["seconds"]


class DeliverySpec(BaseModel):
    """The `delivery` block of a Broker, Trigger, Channel or Subscription."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    dead_letter_sink: Destination | None = Field(default=None, alias="deadLetterSink")
    retry: int | None = Field(default=None, ge=0)
    backoff_policy: Literal["linear", "exponential"] | None = Field(default=None, alias="backoffPolicy")
    backoff_delay: str | None = Field(default=None, alias="backoffDelay")
    timeout: str | None = None
    retry_after_max: str | None = Field(default=None, alias="retryAfterMax")
    format: Literal["json", "binary"] | None = None

    @field_validator("backoff_delay", "retry_after_max")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_iso8601_duration(value)
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | None) -> str | None:
        if value is not None and parse_iso8601_duration(value) <= 0:
            raise ValueError("timeout must be greater than zero")
        return value

    def is_empty(self) -> bool:
        return not self.model_fields_set and all(
            getattr(self, name) is None for name in type(self).model_fields
        )


def effective_delivery(own: DeliverySpec | None, parent: DeliverySpec | None) -> DeliverySpec | None:
    """The delivery that applies: `own` if it sets anything at all, else the parent's."""
    if own is not None and not own.is_empty():
        return own
    return parent
