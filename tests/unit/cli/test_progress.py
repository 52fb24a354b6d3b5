"""The progress line: its text, its pace, and silence off a terminal."""

from __future__ import annotations

import io

import pytest

from kanal.cli.progress import Progress, progress_line


@pytest.mark.parametrize(
    ("done", "total", "elapsed", "expected"),
    [
        (0, None, 0.0, "replaying 0  -/s"),
        (1500, None, 3.0, "replaying 1,500  500/s"),
        (250, 1000, 5.0, "replaying 250/1,000 [######..................]  25%  50/s  ETA 15s"),
        (1000, 1000, 2.0, "replaying 1,000/1,000 [########################] 100%  500/s  ETA 0s"),
        (10, 100_000, 1.0, "replaying 10/100,000 [........................]   0%  10/s  ETA 2h46m"),
        (0, 10, 1.0, "replaying 0/10 [........................]   0%  0/s  ETA ?"),
    ],
    ids=["nothing", "no-total", "quarter", "done", "hours", "stalled"],
)
def test_progress_line(done: int, total: int | None, elapsed: float, expected: str) -> None:
    assert progress_line("replaying", done, total, elapsed) == expected


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_draws_in_place_on_a_terminal_at_most_ten_times_a_second() -> None:
    now = [0.0]
    out = _Tty()
    bar = Progress("redriving", stream=out, clock=lambda: now[0])
    for step in range(1, 101):  # 100 updates over 1 s
        now[0] = step / 100
        bar.update(step, 100)
    bar.close()
    text = out.getvalue()
    assert 9 <= text.count("\r") <= 12
    assert text.endswith("redriving 100/100 [########################] 100%  100/s  ETA 0s\n")


def test_silent_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress("replaying", stream=out)
    bar.update(5, 10)
    bar.close()
    assert not bar.enabled and out.getvalue() == ""
