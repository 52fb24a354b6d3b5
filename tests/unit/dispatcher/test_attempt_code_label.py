"""The dispatcher's attempt codes are a bounded label whatever status line a subscriber answers."""

from __future__ import annotations

import pytest

from dispatcher.metrics import code_label


@pytest.mark.parametrize(
    ("status", "label"),
    [
        pytest.param(None, "none", id="no-response"),
        pytest.param(0, "none", id="zero"),
        pytest.param(100, "100", id="lowest"),
        pytest.param(202, "202", id="accepted"),
        pytest.param(599, "599", id="highest"),
        pytest.param(600, "invalid", id="600"),
        pytest.param(999, "invalid", id="999"),
        pytest.param(42, "invalid", id="two-digits"),
    ],
)
def test_code_label(status: int | None, label: str) -> None:
    assert code_label(status) == label


def test_a_subscriber_answering_every_status_makes_at_most_502_labels() -> None:
    assert len({code_label(status) for status in range(0, 1000)}) == 500 + 2  # 100-599, none, invalid
