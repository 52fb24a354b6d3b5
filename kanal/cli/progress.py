"""A progress line for long work (`kanal replay`, `kanal deadletters redrive`): count, bar,
percentage, rate and time left, redrawn in place on a terminal at most ten times a second.

When the stream is not a terminal (a pipe, a file, CI) it prints nothing: logs stay clean, and
the command's summary line says what was done. `progress_line` is the pure part.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "progress_line"]


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(label: str, done: int, total: int | None, elapsed: float, width: int = 24) -> str:
    """`label 250/1,000 [######..................]  25%  50/s  ETA 15s`; without a total, the
    count and the rate only."""
    rate = done / elapsed if elapsed > 0 else 0.0
    speed = f"{rate:,.0f}/s" if elapsed > 0 else "-/s"
    if not total:
        return f"{label} {done:,}  {speed}"
    done = min(done, total)
    filled = width * done // total
    eta = _duration((total - done) / rate) if rate > 0 else "?"
    return (
        f"{label} {done:,}/{total:,} [{'#' * filled}{'.' * (width - filled)}] "
        f"{100 * done // total:3d}%  {speed}  ETA {eta}"
    )


class Progress:
    """Draws `progress_line` on `stream` while work goes on; `close()` ends the line."""

    def __init__(
        self,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.1,
    ) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._min_interval = min_interval
        self._width = 0
        self._last: tuple[int, int | None] | None = None

    def update(self, done: int, total: int | None, *, force: bool = False) -> None:
        if not self.enabled:
            return
        self._last = (done, total)
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < self._min_interval:
            return
        self._drawn_at = now
        line = progress_line(self._label, done, total, now - self._started)
        pad = " " * max(0, self._width - len(line))  # clear what a longer line left
        self._width = len(line)
        self._stream.write(f"\r{line}{pad}")
        self._stream.flush()

    def close(self) -> None:
        """Draw the last count given, whatever the time since the last drawing, and end the line."""
        if not self.enabled or self._last is None:
            return
        self.update(*self._last, force=True)
        self._stream.write("\n")
        self._stream.flush()
