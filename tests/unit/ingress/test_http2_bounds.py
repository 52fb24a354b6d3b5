"""The counting behind the HTTP/2 bounds: how many resets and idle frames a client may send."""

from __future__ import annotations

import pytest

from ingress.http2_bounds import Budget


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
