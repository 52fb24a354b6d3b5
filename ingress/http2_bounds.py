"""The bounds an HTTP/2 client is held to, and the counting behind them: pure, no I/O.

`Http2Limits` says how much one connection may hold and how long each part may take: streams
open at once (those reset while their event is being stored still count), the receive window a
stream gets, how many bytes of unfinished bodies a connection may buffer before only its oldest
stream gets more window, how long a request may take to arrive whole and an answer may wait for
a client that does not read, and how many resets and frames that do no work (PING, SETTINGS,
WINDOW_UPDATE, PRIORITY, empty DATA, unknown types) a client may send before it is told
ENHANCE_YOUR_CALM. `Budget` counts the last two; `ReceiveWindows` decides the window each
stream is granted. `ingress.http2` enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget", "Http2Limits", "ReceiveWindows"]


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


class ReceiveWindows:
    """The window a connection grants, as bodies arrive. A stream starts with `stream_window`
    and is granted back to it as its body arrives while the connection's unfinished bodies stay
    within the budget; past it only the oldest unfinished stream is granted any, and enough for
    the rest of its body at once (one byte more, so a body over the limit is seen), so it
    finishes; the others wait until a body is done. The connection's own window is granted
    again as bytes arrive: the streams' windows are what bound memory, and one stream's unread
    body must not stall the others. Grants are batched: none smaller than half a window."""

    __slots__ = (
        "_budget",
        "_connection_owed",
        "_connection_refill",
        "_max_body",
        "_reading",
        "_refill",
        "_starved",
        "_stream_window",
        "buffered",
    )

    def __init__(self, limits: Http2Limits, max_body: int) -> None:
        self._stream_window = limits.stream_window
        self._refill = max(1, limits.stream_window // 2)
        self._connection_refill = max(1, limits.connection_window // 2)
        self._budget = limits.body_budget if limits.body_budget is not None else max_body
        self._max_body = max_body
        # Each unfinished stream's [window, body bytes], oldest first. Its window is as the
        # server counts it: exact once the client acknowledged the server's SETTINGS, smaller
        # than h2's count before (h2 holds the client to the default window until then).
        self._reading: dict[int, list[int]] = {}
        self._connection_owed = 0
        self._starved = False  # a stream was left without window for the budget
        self.buffered = 0  # bytes of unfinished bodies

    def open(self, stream_id: int) -> None:
        self._reading[stream_id] = [self._stream_window, 0]

    def connection(self, flow_controlled: int) -> int:
        """Bytes arrived on any stream: the connection's window to grant now (0: none yet)."""
        self._connection_owed += flow_controlled
        if self._connection_owed < self._connection_refill:
            return 0
        owed, self._connection_owed = self._connection_owed, 0
        return owed

    def received(self, stream_id: int, size: int, flow_controlled: int, *, ending: bool) -> int:
        """Body bytes arrived on an unfinished stream (`size` of data, `flow_controlled` with
        padding): the window to grant it now (0: none)."""
        entry = self._reading[stream_id]
        entry[0] -= flow_controlled
        entry[1] += size
        self.buffered += size
        if ending or entry[0] > self._refill:
            return 0
        return self._grant(stream_id, entry)

    def _grant(self, stream_id: int, entry: list[int]) -> int:
        if self.buffered <= self._budget:
            target = self._stream_window
        elif stream_id == next(iter(self._reading)):
            target = self._max_body + 1 - entry[1]
        else:
            self._starved = True
            return 0
        if target - entry[0] < self._refill:
            return 0
        grant = target - entry[0]
        entry[0] = target
        return grant

    def done(self, stream_id: int) -> list[tuple[int, int]]:
        """A stream's body is whole or given up: its bytes leave the budget. The grants, as
        (stream id, window), of streams that waited for it."""
        entry = self._reading.pop(stream_id, None)
        if entry is None:
            return []
        self.buffered -= entry[1]
        if not self._starved:
            return []
        self._starved = False
        grants = []
        for waiting, waiting_entry in self._reading.items():
            if waiting_entry[0] <= self._refill:
                grant = self._grant(waiting, waiting_entry)
                if grant:
                    grants.append((waiting, grant))
        return grants
