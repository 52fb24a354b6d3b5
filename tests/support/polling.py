"""Waiting for a condition in end-to-end tests: what Kanal publishes every few seconds (delivery
statistics, EventTypes) is polled for until it holds. The wait proves nothing by itself; the
condition checked at its end does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(check: Callable[[], tuple[bool, str]], what: str, timeout: float = 40.0) -> str:
    """Run `check` (in a thread) until it says done; the text it gave then. Fails with `what`
    and the last text when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        done, text = await asyncio.to_thread(check)
        if done:
            return text
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout}s; last output:\n{text}")
