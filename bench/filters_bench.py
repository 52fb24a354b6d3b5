"""Micro-benchmark of Trigger filter evaluation: the index and CESQL, per event.

Run ``python bench/filters_bench.py``. It prints per-event times and ratios against a baseline
measured in the same run, never asserting times (machines differ):

(a) 1,000 Triggers on one Broker, each an ``exact`` filter on a distinct ``type``: matching one
    event through ``FilterIndex`` (target < 20 µs) versus a loop over the 1,000 compiled filters.
(b) A typical CESQL filter, three comparisons joined by AND/OR (target < 5 µs), versus ``TRUE``.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from channel.filters import FilterIndex, compile_cesql, compile_trigger_filter

TRIGGERS = 1_000
TYPICAL = "type = 'com.example.order.created' AND knativebrokerttl < 30 OR subject = 'priority'"
EVENT = {
    "specversion": "1.0",
    "id": "a1b2c3",
    "source": "/shop/orders",
    "type": "com.example.order.created",
    "subject": "order-42",
    "knativebrokerttl": "20",
}


def per_call_us(function: Callable[[], object], repeat: int = 5) -> float:
    """Best-of-``repeat`` time of one call in microseconds, after calibrating the loop count."""
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


Row = tuple[str, float, str, float, str, str]
"""Case, its µs per event, baseline name, baseline µs per event, ratio text, target."""


def bench_index() -> list[Row]:
    filters = [
        compile_trigger_filter(None, [{"exact": {"type": f"com.example.type{n}"}}]) for n in range(TRIGGERS)
    ]
    index: FilterIndex[int] = FilterIndex()
    for key, compiled in enumerate(filters):
        index.add(key, compiled)
    pairs = list(enumerate(filters))

    def naive(attributes: dict[str, str]) -> list[int]:
        return [key for key, compiled in pairs if compiled.matches(attributes)]

    rows = []
    for label, event_type in (("one matches", "com.example.type500"), ("none matches", "com.example.other")):
        attributes = {**EVENT, "type": event_type}
        assert index.match(attributes) == naive(attributes)
        indexed = per_call_us(partial(index.match, attributes))
        looped = per_call_us(partial(naive, attributes))
        ratio = f"{looped / indexed:.0f}× faster"
        rows.append(
            (f"(a) index, {TRIGGERS:,} exact Triggers, {label}", indexed, "loop", looped, ratio, "< 20 µs")
        )
    return rows


def bench_cesql() -> list[Row]:
    typical, trivial = compile_cesql(TYPICAL), compile_cesql("TRUE")
    assert typical.matches(EVENT) and trivial.matches(EVENT)
    matched = per_call_us(lambda: typical.matches(EVENT))
    baseline = per_call_us(lambda: trivial.matches(EVENT))
    evaluated = per_call_us(lambda: typical.evaluate(EVENT))
    baseline_evaluated = per_call_us(lambda: trivial.evaluate(EVENT))
    return [
        (
            "(b) CESQL typical, matches()",
            matched,
            "TRUE",
            baseline,
            f"{matched / baseline:.1f}× TRUE",
            "< 5 µs",
        ),
        (
            "(b) CESQL typical, evaluate()",
            evaluated,
            "TRUE",
            baseline_evaluated,
            f"{evaluated / baseline_evaluated:.1f}× TRUE",
            "< 5 µs",
        ),
    ]


def main() -> None:
    print(f"Python {sys.version.split()[0]}; CESQL typical: {TYPICAL}\n")
    print("| Case | Per event | Baseline | Baseline per event | Ratio | Target |")
    print("|---|---:|---|---:|---:|---|")
    for case, measured, baseline, baseline_us, ratio, target in [*bench_index(), *bench_cesql()]:
        print(f"| {case} | {measured:.2f} µs | {baseline} | {baseline_us:.2f} µs | {ratio} | {target} |")


if __name__ == "__main__":
    main()
