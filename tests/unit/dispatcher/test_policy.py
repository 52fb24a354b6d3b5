"""The dispatcher's pure decisions: which answers are retried, backoff, Retry-After, dead-letter
extensions, and which offsets may be committed when deliveries finish out of order."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channel.resources.delivery import DeliverySpec
from dispatcher.deadletter import error_extensions, with_extensions
from dispatcher.offsets import CreationFloor, PartitionOffsets
from dispatcher.retry import Outcome, RetryPolicy, classify_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, Outcome.RETRYABLE),
        (200, Outcome.SUCCESS),
        (202, Outcome.SUCCESS),
        (204, Outcome.SUCCESS),
        (100, Outcome.FATAL),
        (301, Outcome.FATAL),
        (307, Outcome.FATAL),
        (400, Outcome.FATAL),
        (401, Outcome.FATAL),
        (403, Outcome.FATAL),
        (410, Outcome.FATAL),
        (422, Outcome.FATAL),
        (404, Outcome.RETRYABLE),
        (408, Outcome.RETRYABLE),
        (409, Outcome.RETRYABLE),
        (429, Outcome.RETRYABLE),
        (500, Outcome.RETRYABLE),
        (503, Outcome.RETRYABLE),
    ],
)
def test_classify_status(status: int | None, outcome: Outcome) -> None:
    assert classify_status(status) is outcome


def test_defaults_are_knatives_no_retry_and_200ms() -> None:
    policy = RetryPolicy.from_spec(None, default_timeout=30)
    assert policy.attempts == 1
    assert policy.backoff_delay == 0.2


def test_linear_and_exponential_backoff_without_jitter() -> None:
    linear = RetryPolicy.from_spec(
        DeliverySpec.model_validate({"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.5S"}),
        jitter=0,
    )
    assert [linear.backoff(n, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 1.5]
    assert linear.attempts == 4
    exponential = RetryPolicy.from_spec(
        DeliverySpec.model_validate({"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT1S"}),
        jitter=0,
        max_backoff=5,
    )
    assert [exponential.backoff(n, 0.0) for n in (1, 2, 3)] == [2.0, 4.0, 5.0]  # capped


@given(st.integers(1, 30), st.floats(0, 0.999))
def test_jitter_only_adds_and_stays_bounded(n: int, rand: float) -> None:
    policy = RetryPolicy(retry=30, backoff_delay=0.1, jitter=0.2, max_backoff=60)
    plain = RetryPolicy(retry=30, backoff_delay=0.1, jitter=0.0, max_backoff=60).backoff(n, 0.0)
    assert plain <= policy.backoff(n, rand) <= plain * 1.2 + 1e-9


def test_retry_after_is_honoured_capped_and_can_be_turned_off() -> None:
    honoured = RetryPolicy(retry=1, backoff_delay=0.1, jitter=0)
    assert honoured.next_delay(1, 0.0, 3.0) == 3.0
    assert honoured.next_delay(1, 0.0, 0.0) == pytest.approx(0.2)  # never below the backoff
    capped = RetryPolicy(retry=1, backoff_delay=0.1, jitter=0, retry_after_max=1.0)
    assert capped.next_delay(1, 0.0, 30.0) == 1.0
    off = RetryPolicy(retry=1, backoff_delay=0.1, jitter=0, retry_after_max=0.0)
    assert off.next_delay(1, 0.0, 30.0) == pytest.approx(0.2)


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", now=0) == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412500.0) == 0.0
    assert parse_retry_after("soon", now=0) is None
    assert parse_retry_after(None, now=0) is None


def test_dead_letter_extensions() -> None:
    body = b"x" * 2000
    ext = error_extensions("http://sub/", 503, body)
    assert ext["knativeerrordest"] == "http://sub/"
    assert ext["knativeerrorcode"] == "503"
    assert base64.b64decode(ext["knativeerrordata"]) == body[:1024]
    assert error_extensions("http://sub/", None, None) == {"knativeerrordest": "http://sub/"}
    assert "knativeerrordata" not in error_extensions("http://sub/", 500, b"")
    # A dead letter of a dead letter carries only the latest error.
    again = with_extensions({"id": "1", **ext}, error_extensions("http://dls/", None, None))
    assert again == {"id": "1", "knativeerrordest": "http://dls/"}


@given(st.lists(st.integers(0, 200), min_size=1, max_size=60, unique=True), st.randoms(use_true_random=False))
def test_committable_never_passes_an_unfinished_offset(offsets: list[int], rnd: random.Random) -> None:
    offsets.sort()
    parts = PartitionOffsets()
    for offset in offsets:
        parts.begin(offset)
    finished: set[int] = set()
    order = offsets[:]
    rnd.shuffle(order)
    for offset in order:
        parts.done(offset)
        finished.add(offset)
        committable = parts.committable()
        assert committable is not None
        assert all(o in finished for o in offsets if o < committable)
        unfinished = [o for o in offsets if o not in finished]
        assert parts.lowest() == (min(unfinished) if unfinished else None)
    assert parts.committable() == offsets[-1] + 1
    assert parts.pending == 0


def test_a_new_trigger_refuses_older_records_until_its_boundary_and_commits_nothing_before() -> None:
    floor = CreationFloor()
    floor.set("p0", 1_000)
    floor.set("p1", 1_000)
    # offsets_for_times answered too early: the records before the creation time are not its own,
    # and while it has not read past them a commit would let a restart deliver them.
    assert floor.refuses("p0", 999)
    assert floor.holds("p0")
    # The first record at or after the creation time is the boundary: it and all after it are the
    # Trigger's, even one stamped a little earlier (another producer's clock).
    assert not floor.refuses("p0", 1_000)
    assert not floor.holds("p0")
    assert not floor.refuses("p0", 998)
    # Partitions are independent, and records the Trigger's filter skips still move its boundary.
    assert floor.refuses("p1", 500)
    floor.reached("p1", 999)
    assert floor.holds("p1")
    floor.reached("p1", 1_001)
    assert not floor.holds("p1")
    assert not floor.refuses("p1", 500)
    # A partition with a committed offset has no floor at all; a revoked one forgets it.
    assert not floor.refuses("p2", 0)
    floor.set("p3", 1_000)
    floor.forget("p3")
    assert not floor.holds("p3") and not floor.refuses("p3", 0)
