"""Times and offsets on the command line: `--from 2026-11-25T10:00:00Z`, `--since 2h`, `--from 0:120,1:80`."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

__all__ = ["parse_offsets", "parse_time_ms"]

_AGO = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time_ms(text: str, now: float | None = None) -> int:
    """An RFC 3339 time, or a duration ago (`90s`, `15m`, `2h`, `1d`), as epoch milliseconds."""
    match = _AGO.fullmatch(text.strip())
    if match:
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
        return int(((time.time() if now is None else now) - seconds) * 1000)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an RFC 3339 time (2026-11-25T10:00:00Z) nor a duration ago (15m, 2h)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_offsets(text: str) -> dict[int, int] | int | None:
    """`120` (every partition), `0:120,1:80` (per partition), or None if `text` is not offsets."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    pairs = {}
    for part in text.split(","):
        partition, sep, offset = part.partition(":")
        if not sep or not partition.strip().isdigit() or not offset.strip().isdigit():
            return None
        pairs[int(partition)] = int(offset)
    return pairs
