"""Subscriber protection's decisions, by tables on a clock the tests move: which answers are a
sign of load, how the in-flight limit adapts, the rate limit, and Retry-After pauses."""

from __future__ import annotations

import math

import pytest

from dispatcher.limiter import (
    INITIAL_LIMIT,
    LATENCY_SLACK,
    OVERLOAD_FACTOR,
    Limiter,
    Limits,
    Signal,
    signal_of,
)

OK, ERROR, OVERLOAD = Signal.OK, Signal.ERROR, Signal.OVERLOAD


@pytest.mark.parametrize(
    ("status", "timed_out", "signal"),
    [
        (200, False, OK),
        (202, False, OK),
        (204, False, OK),
        (400, False, OK),  # about the event, not the load
        (404, False, OK),
        (422, False, OK),
        (429, False, OVERLOAD),
        (503, False, OVERLOAD),
        (408, False, OVERLOAD),
        (None, True, OVERLOAD),
        (500, False, ERROR),
        (502, False, ERROR),
        (None, False, ERROR),  # refused, reset
        (101, False, ERROR),
        (302, False, OK),
    ],
)
def test_signal_of(status: int | None, timed_out: bool, signal: Signal) -> None:
    assert signal_of(status, timed_out) is signal


def _round(limiter: Limiter, now: float, latency: float, signal: Signal = OK) -> int:
    """Admit as many attempts as the limiter allows at `now`, answer them all after `latency`."""
    admitted = 0
    while limiter.admit(now) == 0.0:
        admitted += 1
    for _ in range(admitted):
        limiter.release(now + latency, now, latency, signal)
    return admitted


def test_slow_start_doubles_each_round_trip_up_to_the_maximum() -> None:
    limiter = Limiter(Limits(max_in_flight=40), now=0.0)
    assert limiter.limit == INITIAL_LIMIT
    seen = [_round(limiter, t * 0.01, 0.005) for t in range(6)]
    assert seen == [4, 8, 16, 32, 40, 40]


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        pytest.param(OVERLOAD, int(16 * OVERLOAD_FACTOR), id="overload-cuts"),
        pytest.param(ERROR, 16, id="error-keeps"),
    ],
)
def test_one_cut_per_round_trip(signal: Signal, expected: int) -> None:
    limiter = Limiter(Limits(max_in_flight=100), now=0.0)
    for t in range(3):
        _round(limiter, t * 0.01, 0.005)
    assert limiter.limit == 32
    limiter = Limiter(Limits(max_in_flight=16, adaptive=True), now=0.0)
    for t in range(4):
        _round(limiter, t * 0.01, 0.005)
    assert limiter.limit == 16
    # Sixteen requests sent together all answer 429: one cut, not sixteen.
    assert _round(limiter, 1.0, 0.005, signal) == 16
    assert limiter.limit == expected


def test_after_a_cut_growth_is_additive() -> None:
    limiter = Limiter(Limits(max_in_flight=100), now=0.0)
    for t in range(3):
        _round(limiter, t * 0.01, 0.005)
    _round(limiter, 1.0, 0.005, OVERLOAD)
    cut = limiter.limit
    assert cut == int(32 * OVERLOAD_FACTOR)
    grown = [_round(limiter, 2.0 + t * 0.01, 0.005) for t in range(4)]
    # One more per round trip (1/limit per answer), where slow start doubled.
    assert grown == [cut, cut + 1, cut + 2, cut + 3]


def test_an_answer_to_a_request_sent_before_the_cut_does_not_cut_again() -> None:
    limiter = Limiter(Limits(max_in_flight=16), now=0.0)
    for t in range(4):
        _round(limiter, t * 0.01, 0.005)
    for _ in range(16):
        assert limiter.admit(1.0) == 0.0
    limiter.release(1.1, 1.0, 0.1, OVERLOAD)
    assert limiter.limit == int(16 * OVERLOAD_FACTOR)
    limiter.release(1.2, 1.0, 0.2, OVERLOAD)  # sent at 1.0, before the cut at 1.1
    assert limiter.limit == int(16 * OVERLOAD_FACTOR)
    while limiter.in_flight:
        limiter.release(1.3, 1.0, 0.3, OK)
    assert limiter.admit(1.4) == 0.0
    limiter.release(1.5, 1.4, 0.1, OVERLOAD)  # sent after the cut: a new sign
    assert limiter.limit == int(int(16 * OVERLOAD_FACTOR) * OVERLOAD_FACTOR)


def test_never_below_one() -> None:
    limiter = Limiter(Limits(max_in_flight=8), now=0.0)
    for t in range(20):
        _round(limiter, float(t), 0.01, OVERLOAD)
    assert limiter.limit == 1
    assert limiter.admit(100.0) == 0.0
    assert limiter.admit(100.0) == math.inf


@pytest.mark.parametrize(
    ("quiet", "slow", "cut"),
    [
        pytest.param(0.005, 0.005 + LATENCY_SLACK / 2, False, id="jitter-under-the-slack"),
        pytest.param(0.050, 0.090, False, id="under-twice-the-quiet-latency"),
        pytest.param(0.050, 0.300, True, id="six-times-slower"),
        pytest.param(0.001, 0.040, True, id="fast-subscriber-queueing"),
    ],
)
def test_rising_latency_cuts(quiet: float, slow: float, cut: bool) -> None:
    limiter = Limiter(Limits(max_in_flight=10), now=0.0)
    now = 0.0
    for _ in range(5):
        now += 1.0
        _round(limiter, now, quiet)
    assert limiter.limit == 10
    for _ in range(40):
        now += 1.0
        _round(limiter, now, slow)
    assert (limiter.limit < 10) is cut


def test_growth_only_while_the_limit_is_used() -> None:
    limiter = Limiter(Limits(max_in_flight=50), now=0.0)
    for t in range(100):
        assert limiter.admit(t * 0.1) == 0.0  # one at a time: never more than one in flight
        limiter.release(t * 0.1 + 0.01, t * 0.1, 0.01, OK)
    assert limiter.limit == INITIAL_LIMIT


def test_fixed_limit_when_adaptation_is_off() -> None:
    limiter = Limiter(Limits(max_in_flight=6, adaptive=False), now=0.0)
    assert [_round(limiter, float(t), 0.01, s) for t, s in enumerate([OK, OVERLOAD, OVERLOAD, OK])] == [6] * 4


def test_rate_limit_with_burst() -> None:
    limiter = Limiter(Limits(max_in_flight=100, adaptive=False, rate=10.0, burst=3), now=0.0)
    assert [limiter.admit(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit(0.0) == pytest.approx(0.1)
    assert limiter.admit(0.05) == pytest.approx(0.05)
    assert limiter.admit(0.1) == 0.0
    # Idle for long: no more than the burst saved up.
    assert [limiter.admit(10.0) for _ in range(4)][-1] == pytest.approx(0.1)


def test_rate_limit_holds_the_rate_over_time() -> None:
    limiter = Limiter(Limits(max_in_flight=1000, adaptive=False, rate=200.0, burst=20), now=0.0)
    now, admitted = 0.0, 0
    while now < 10.0:
        wait = limiter.admit(now)
        if wait == 0.0:
            admitted += 1
            limiter.release(now, now, 0.0, OK)
        else:
            now += wait
    assert 2000 <= admitted <= 2020


def test_retry_after_pauses_the_subscriber() -> None:
    limiter = Limiter(Limits(max_in_flight=10), now=0.0)
    assert limiter.admit(0.0) == 0.0
    assert limiter.admit(0.0) == 0.0
    limiter.release(0.1, 0.0, 0.1, OVERLOAD, retry_after=2.0)
    assert limiter.paused(0.1) == pytest.approx(2.0)
    assert limiter.admit(1.0) == pytest.approx(1.1)
    limiter.release(1.5, 0.0, 1.5, OVERLOAD, retry_after=0.5)  # a shorter one does not shorten it
    assert limiter.admit(1.6) == pytest.approx(0.5)
    assert limiter.admit(2.1) == 0.0


def test_configure_keeps_the_adapted_limit_within_the_new_bounds() -> None:
    limiter = Limiter(Limits(max_in_flight=64), now=0.0)
    for t in range(5):
        _round(limiter, t * 0.01, 0.005)
    assert limiter.limit == 64
    limiter.configure(Limits(max_in_flight=10))
    assert limiter.limit == 10
    limiter.configure(Limits(max_in_flight=100))
    assert limiter.limit == 10  # grows again from there
    limiter.configure(Limits(max_in_flight=7, adaptive=False))
    assert limiter.limit == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_in_flight": 0},
        {"max_in_flight": 1, "rate": 0.0},
        {"max_in_flight": 1, "rate": math.inf},
        {"max_in_flight": 1, "burst": 0},
    ],
)
def test_limits_are_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_capacity_bound_subscriber_converges_near_its_capacity() -> None:
    """A simulated subscriber with 10 slots of 50 ms (200 events/s) that answers 429 beyond them:
    the limit settles near 10, most attempts succeed, where a fixed 64 is refused 54 times in 64."""

    def run(limits: Limits) -> tuple[int, int]:
        limiter = Limiter(limits, now=0.0)
        ok = refused = 0
        now = 0.0
        while now < 20.0:
            admitted = 0
            while limiter.admit(now) == 0.0:
                admitted += 1
            served = min(admitted, 10)
            for _ in range(served):
                limiter.release(now + 0.05, now, 0.05, OK)
            for _ in range(admitted - served):
                limiter.release(now + 0.001, now, 0.001, OVERLOAD)
            ok += served
            refused += admitted - served
            now += 0.05
        return ok, refused

    ok, refused = run(Limits(max_in_flight=64))
    assert ok >= 0.8 * 4000
    assert refused <= 0.05 * ok
    fixed_ok, fixed_refused = run(Limits(max_in_flight=64, adaptive=False))
    assert fixed_ok == 4000
    assert fixed_refused == 54 * 400
