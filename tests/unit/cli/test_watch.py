"""`kanal get -w`: which rows a change prints, and the loop around a poll."""

from __future__ import annotations

import io

import pytest

from kanal.cli.client import ClientError
from kanal.cli.watch import changed_rows, watch

A = ["a", "True", "1"]
B = ["b", "False", "-"]


@pytest.mark.parametrize(
    ("before", "after", "printed"),
    [
        ({"a": A}, {"a": A}, []),
        ({"a": A}, {"a": A, "b": B}, [B]),
        ({"a": A}, {"a": ["a", "True", "5"]}, [["a", "True", "5"]]),
        ({"a": A, "b": B}, {"a": A}, [B]),
    ],
    ids=["same", "added", "changed", "removed"],
)
def test_changed_rows(
    before: dict[str, list[str]], after: dict[str, list[str]], printed: list[list[str]]
) -> None:
    assert changed_rows(before, after) == printed


@pytest.mark.parametrize(
    ("before", "after", "printed"),
    [
        ({"a": ["a", "True", "9s"]}, {"a": ["a", "True", "10s"]}, []),
        ({"a": ["a", "Unknown", "9s"]}, {"a": ["a", "True", "10s"]}, [["a", "True", "10s"]]),
        ({"a": ["a", "True", "9s"]}, {}, [["a", "True", "9s"]]),
    ],
    ids=["only-older", "ready-and-older", "removed"],
)
def test_the_age_alone_is_not_a_change(
    before: dict[str, list[str]], after: dict[str, list[str]], printed: list[list[str]]
) -> None:
    assert changed_rows(before, after, ignore=2) == printed


def test_table_once_then_a_line_per_change_until_the_limit() -> None:
    polls = iter(
        [
            {"a": A},
            {"a": A},
            {"a": ["a", "True", "12"]},
            ClientError("controller gone"),
            ClientError("controller gone"),
            {"a": ["a", "True", "12"], "b": B},
        ]
    )

    def poll() -> tuple[list[str], dict[str, list[str]]]:
        rows = next(polls)
        if isinstance(rows, Exception):
            raise rows
        return ["NAME", "READY", "LAG"], rows

    out, err = io.StringIO(), io.StringIO()
    assert watch(poll, out=out, err=err, limit=2, sleep=lambda _: None) == 0
    assert out.getvalue().splitlines() == [
        "NAME   READY   LAG",
        "a      True    1",
        "a      True    12",
        "b      False   -",
    ]
    assert err.getvalue().count("controller gone") == 1  # said once, not per poll
