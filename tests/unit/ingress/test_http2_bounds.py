"""The counting behind the HTTP/2 bounds: how many resets and idle frames a client may send."""

from __future__ import annotations

import pytest

from ingress.http2_bounds import Budget, Http2Limits, ReceiveWindows


@pytest.mark.parametrize(
    ("allowance", "earned", "opened", "spent", "within"),
    [
        pytest.param(3, 0.0, 0, 3, True, id="allowance-spent-exactly"),
        pytest.param(3, 0.0, 0, 4, False, id="one-over-the-allowance"),
        pytest.param(3, 0.5, 10, 8, True, id="streams-opened-earn-more"),
        pytest.param(3, 0.5, 10, 9, False, id="earned-and-spent-beyond"),
        pytest.param(0, 0.0, 0, 1, False, id="nothing-allowed"),
    ],
)
def test_a_budget_within_one_window(
    allowance: int, earned: float, opened: int, spent: int, within: bool
) -> None:
    budget = Budget(allowance, 10.0, earned)
    for _ in range(opened):
        budget.earn(0.0)
    results = [budget.spend(1.0) for _ in range(spent)]
    assert results[-1] is within
    assert all(results[:-1])


def test_a_new_window_starts_over() -> None:
    budget = Budget(2, 10.0)
    assert budget.spend(0.0) and budget.spend(5.0) and not budget.spend(9.9)
    assert budget.spend(10.0) and budget.spend(19.0) and not budget.spend(19.5)


def test_earnings_do_not_carry_into_the_next_window() -> None:
    budget = Budget(1, 10.0, 1.0)
    for _ in range(5):
        budget.earn(0.0)
    assert budget.spend(20.0) and not budget.spend(20.0)


KIB = 1024
# 16 KiB stream windows, a budget of 64 KiB, a body limit of 100 KiB.
LIMITS = Http2Limits(stream_window=16 * KIB, connection_window=1024 * KIB, body_budget=64 * KIB)


def _windows(*streams: int) -> ReceiveWindows:
    windows = ReceiveWindows(LIMITS, 100 * KIB)
    for stream_id in streams:
        windows.open(stream_id)
    return windows


@pytest.mark.parametrize(
    ("received", "ending", "grant"),
    [
        pytest.param(4 * KIB, False, 0, id="a quarter used: no grant yet"),
        pytest.param(8 * KIB, False, 8 * KIB, id="half used: back to the whole window"),
        pytest.param(16 * KIB, False, 16 * KIB, id="all used: all of it again"),
        pytest.param(16 * KIB, True, 0, id="the body ended: nothing more to grant"),
    ],
)
def test_within_the_budget_a_stream_gets_its_window_back(received: int, ending: bool, grant: int) -> None:
    windows = _windows(1)
    assert windows.received(1, received, received, ending=ending) == grant
    assert windows.buffered == received


def test_past_the_budget_only_the_oldest_stream_gets_window_and_all_its_body_at_once() -> None:
    windows = _windows(1, 3, 5, 7, 9)
    for stream_id in (3, 5, 7, 9):  # 64 KiB buffered: the budget, no more
        assert windows.received(stream_id, 16 * KIB, 16 * KIB, ending=False) == 16 * KIB
    # Over the budget: the oldest gets the rest of its body (100 KiB, +1 to see one over it)...
    assert windows.received(1, 16 * KIB, 16 * KIB, ending=False) == 100 * KIB + 1 - 16 * KIB
    # ... and another waits.
    assert windows.received(3, 16 * KIB, 16 * KIB, ending=False) == 0
    # The oldest's body done, the waiting one may go on (the oldest now, and over the budget).
    assert windows.done(1) == [(3, 100 * KIB + 1 - 32 * KIB)]
    assert windows.buffered == 80 * KIB


def test_padding_counts_against_the_window_not_the_body() -> None:
    windows = _windows(1)
    assert windows.received(1, 1 * KIB, 9 * KIB, ending=False) == 9 * KIB
    assert windows.buffered == 1 * KIB


def test_the_connection_window_is_granted_again_in_halves() -> None:
    windows = _windows()
    assert windows.connection(500 * KIB) == 0
    assert windows.connection(12 * KIB) == 512 * KIB
    assert windows.connection(1) == 0


def test_a_stream_done_twice_or_never_opened_changes_nothing() -> None:
    windows = _windows(1)
    windows.received(1, 1 * KIB, 1 * KIB, ending=False)
    assert windows.done(1) == [] and windows.done(1) == [] and windows.done(3) == []
    assert windows.buffered == 0
