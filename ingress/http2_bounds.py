"""The bounds an HTTP/2 client is held to, and the counting behind them: pure, no I/O.

`Http2Limits` says how much one connection may hold and how long each part may take: streams
open at once (those reset while their event is being stored still count), the receive window a
stream gets, how many bytes of unfinished bodies a connection may buffer before only its oldest
stream gets more window, how long a request may take to arrive whole and an answer may wait for
a client that does not read, and how many resets and frames that do no work (PING, SETTINGS,
WINDOW_UPDATE, PRIORITY, empty DATA, unknown types) a client may send before it is told
ENHANCE_YOUR_CALM. `Budget` counts the last two. `ingress.http2` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget", "Http2Limits"]


@dataclass(frozen=True, slots=True)
class Http2Limits:
    """What one HTTP/2 connection may hold and how long its parts may take."""

    # SETTINGS_MAX_CONCURRENT_STREAMS: streams open at once. Streams the client reset while
    # their event is being stored still count, so resetting cannot start more work than this.
    max_streams: int = 100
    # SETTINGS_INITIAL_WINDOW_SIZE: what a stream may send before the server grants more. A
    # body up to this size arrives without waiting; the connection's memory for bodies that
    # stop halfway is at most max_streams x this, plus `body_budget` and one body.
    stream_window: int = 16 * 1024
    # The connection's window, granted again as its bytes arrive: each stream's window is
    # what bounds memory; this only has to be large enough not to slow several streams.
    connection_window: int = 1024 * 1024
    # Bytes of unfinished bodies a connection may buffer before only its oldest unfinished
    # stream is granted more window (so that one always finishes); None: the body limit.
    body_budget: int | None = None
    # From a stream's HEADERS to its END_STREAM: past this it is answered 408 and reset.
    request_seconds: float = 30.0
    # How long an answer may wait for a client that does not read it (its window shut, or the
    # socket's write buffer over the high-water mark) before the stream, or the connection,
    # is given up.
    write_stall_seconds: float = 30.0
    # Streams a client may reset (or open beyond max_streams, refused) per window of
    # `reset_seconds`, plus one for every two streams it opened in it; then ENHANCE_YOUR_CALM.
    resets: int = 100
    reset_seconds: float = 10.0
    # Frames that make no request (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, empty DATA,
    # unknown types) a client may send per window of `frame_seconds`; then ENHANCE_YOUR_CALM.
    idle_frames: int = 1000
    frame_seconds: float = 10.0
    # After a GOAWAY for an error: how long the server still reads (and drops) what the client
    # sends before it closes, so its answer is not lost to a TCP reset.
    linger_seconds: float = 2.0


class Budget:
    """How many of something a client may do within `seconds`: `allowance`, plus `earned` for
    each `earn()` (a stream opened) in the same window. Counted in fixed windows, which is cheap
    and catches a flood within two windows at the most."""

    __slots__ = ("_allowance", "_left", "_per_earn", "_seconds", "_start")

    def __init__(self, allowance: int, seconds: float, earned: float = 0.0) -> None:
        self._allowance = allowance
        self._seconds = seconds
        self._per_earn = earned
        self._start = float("-inf")
        self._left = 0.0

    def _roll(self, now: float) -> None:
        if now - self._start >= self._seconds:
            self._start = now
            self._left = float(self._allowance)

    def earn(self, now: float) -> None:
        """Something that justifies more spending (a stream opened) happened."""
        if self._per_earn:
            self._roll(now)
            self._left += self._per_earn

    def spend(self, now: float) -> bool:
        """Count one; False once the window's budget is spent."""
        self._roll(now)
        self._left -= 1
        return self._left >= 0
