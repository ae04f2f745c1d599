"""Pure retry/delay decisions of stratoq.core.policy: no I/O, no clock, seeded randomness."""

from __future__ import annotations

import random

import pytest

from stratoq.core.models import MAX_SQS_DELAY, Backoff
from stratoq.core.policy import (
    MAX_VISIBILITY_SECONDS,
    Complete,
    FailNow,
    Outcome,
    OutcomeKind,
    RetryLater,
    backoff_delay,
    busy_release_delay,
    decide,
    hop_delay,
    is_due,
    unknown_task_delay,
)

NO_JITTER = Backoff(base_seconds=2, max_seconds=600, jitter=False)
RETRYABLE = [OutcomeKind.ERROR, OutcomeKind.TIMEOUT, OutcomeKind.LOST]


# --------------------------------------------------------------------- backoff_delay
@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 32.0), (9, 512.0)],
)
def test_backoff_is_exponential_without_jitter(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, NO_JITTER) == expected


@pytest.mark.parametrize("attempt", [10, 11, 30, 63, 64, 1000])
def test_backoff_is_capped_at_max_seconds(attempt: int) -> None:
    # 2 * 2**9 = 1024 > 600: from attempt 10 on the cap applies; huge attempts must not
    # overflow either.
    assert backoff_delay(attempt, NO_JITTER) == 600.0


@pytest.mark.parametrize("attempt", [0, -3])
def test_backoff_of_attempt_zero_or_less_is_the_base(attempt: int) -> None:
    assert backoff_delay(attempt, NO_JITTER) == 2.0


def test_backoff_with_zero_base_is_zero_even_with_jitter() -> None:
    assert backoff_delay(5, Backoff(base_seconds=0, jitter=True), random.Random(1)) == 0.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_jittered_backoff_stays_within_half_and_full_delay(attempt: int) -> None:
    backoff = Backoff(base_seconds=2, max_seconds=600, jitter=True)
    nominal = backoff_delay(attempt, backoff.model_copy(update={"jitter": False}))
    rng = random.Random(1234)
    samples = [backoff_delay(attempt, backoff, rng) for _ in range(500)]
    assert all(nominal / 2 <= s <= nominal for s in samples)
    # Jitter actually spreads the delays (not a constant) and covers both halves.
    assert len(set(samples)) > 100
    assert min(samples) < nominal * 0.6
    assert max(samples) > nominal * 0.9


def test_jittered_backoff_is_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff(base_seconds=3, max_seconds=100, jitter=True)
    first = [backoff_delay(a, backoff, random.Random(7)) for a in range(1, 8)]
    second = [backoff_delay(a, backoff, random.Random(7)) for a in range(1, 8)]
    assert first == second
    expected_first = 1.5 + random.Random(7).uniform(0, 1.5)
    assert first[0] == expected_first


# ------------------------------------------------------------------------- decide
@pytest.mark.parametrize("attempt", [1, 3, 5])
def test_success_completes_with_the_result(attempt: int) -> None:
    outcome = Outcome(OutcomeKind.SUCCESS, result={"answer": 42})
    assert decide(outcome, attempt, 5, NO_JITTER) == Complete({"answer": 42})


@pytest.mark.parametrize("kind", [OutcomeKind.FAIL, OutcomeKind.UNKNOWN_TASK])
def test_permanent_outcomes_fail_at_once_even_on_the_first_attempt(kind: OutcomeKind) -> None:
    decision = decide(Outcome(kind, message="nope"), 1, 10, NO_JITTER)
    assert decision == FailNow(kind, "nope")


@pytest.mark.parametrize("kind", RETRYABLE)
def test_retryable_outcomes_retry_with_backoff_before_the_last_attempt(kind: OutcomeKind) -> None:
    for attempt, delay in [(1, 2), (2, 4), (3, 8), (4, 16)]:
        decision = decide(Outcome(kind, message="boom"), attempt, 5, NO_JITTER)
        assert decision == RetryLater(delay, kind, "boom")


@pytest.mark.parametrize("kind", RETRYABLE)
@pytest.mark.parametrize(("attempt", "max_attempts"), [(5, 5), (6, 5), (1, 1)])
def test_retryable_outcomes_fail_once_attempts_are_used_up(
    kind: OutcomeKind, attempt: int, max_attempts: int
) -> None:
    decision = decide(Outcome(kind, message="boom"), attempt, max_attempts, NO_JITTER)
    assert decision == FailNow(kind, "boom")


def test_retry_with_a_delay_uses_that_delay_not_the_backoff() -> None:
    decision = decide(Outcome(OutcomeKind.RETRY, message="later", retry_delay=42), 1, 5, NO_JITTER)
    assert decision == RetryLater(42, OutcomeKind.RETRY, "later")


def test_retry_delay_is_rounded_up_to_whole_seconds() -> None:
    decision = decide(Outcome(OutcomeKind.RETRY, retry_delay=2.1), 1, 5, NO_JITTER)
    assert isinstance(decision, RetryLater)
    assert decision.delay_seconds == 3
    assert isinstance(decision.delay_seconds, int)


def test_negative_retry_delay_becomes_zero() -> None:
    decision = decide(Outcome(OutcomeKind.RETRY, retry_delay=-5), 1, 5, NO_JITTER)
    assert isinstance(decision, RetryLater)
    assert decision.delay_seconds == 0


def test_retry_without_a_delay_falls_back_to_the_backoff() -> None:
    decision = decide(Outcome(OutcomeKind.RETRY, message="again"), 3, 5, NO_JITTER)
    assert decision == RetryLater(8, OutcomeKind.RETRY, "again")


def test_retry_on_the_last_attempt_fails_even_with_a_delay() -> None:
    decision = decide(Outcome(OutcomeKind.RETRY, message="x", retry_delay=1), 3, 3, NO_JITTER)
    assert decision == FailNow(OutcomeKind.RETRY, "x")


def test_jittered_decisions_give_whole_seconds_within_bounds() -> None:
    backoff = Backoff(base_seconds=1.5, max_seconds=600, jitter=True)
    rng = random.Random(99)
    for attempt in range(1, 9):
        nominal = min(600, 1.5 * 2 ** (attempt - 1))
        for _ in range(50):
            decision = decide(Outcome(OutcomeKind.ERROR), attempt, 100, backoff, rng)
            assert isinstance(decision, RetryLater)
            assert isinstance(decision.delay_seconds, int)
            # ceil of a value in [nominal/2, nominal]
            assert nominal / 2 <= decision.delay_seconds <= nominal + 1 - 1e-9
            assert decision.delay_seconds >= 1


# ---------------------------------------------------------------------- hop_delay
@pytest.mark.parametrize(
    ("not_before_ms", "now_ms", "expected"),
    [
        (10_000, 10_000, 0),  # due now
        (10_001, 10_000, 1),  # rounds up: never wakes early
        (11_000, 10_000, 1),
        (11_001, 10_000, 2),
        (10_000 + 900_000, 10_000, 900),  # exactly the SQS maximum
        (10_000 + 900_001, 10_000, 900),  # just over: capped
        (10_000 + 86_400_000, 10_000, 900),  # a day: one 15-minute hop
        (5_000, 10_000, 0),  # past due: never negative
        (0, 10**13, 0),
    ],
)
def test_hop_delay(not_before_ms: int, now_ms: int, expected: int) -> None:
    assert hop_delay(not_before_ms, now_ms) == expected


def test_hop_delay_never_exceeds_the_sqs_maximum() -> None:
    assert MAX_SQS_DELAY == 900
    assert all(0 <= hop_delay(nb, 0) <= 900 for nb in range(-5_000_000, 5_000_000, 123_457))


# -------------------------------------------------------------------------- is_due
@pytest.mark.parametrize(
    ("not_before_ms", "now_ms", "due"),
    [
        (None, 0, True),
        (1_000, 5_000, True),  # in the past
        (5_000, 5_000, True),  # exactly now
        (6_000, 5_000, True),  # a second early is tolerated
        (6_001, 5_000, False),  # more than a second early is not
        (100_000, 5_000, False),
    ],
)
def test_is_due(not_before_ms: int | None, now_ms: int, due: bool) -> None:
    assert is_due(not_before_ms, now_ms) is due


# -------------------------------------------------------------- busy_release_delay
@pytest.mark.parametrize(
    ("lease_expires_ms", "now_ms", "expected"),
    [
        (40_000, 10_000, 31),  # 30 s left, plus a second of margin
        (10_500, 10_000, 2),  # rounds up, plus the margin
        (10_000, 10_000, 1),  # expires now: at least one second
        (1_000, 10_000, 1),  # already expired: still at least one second
        (10_000 + 13 * 3600 * 1000, 10_000, 12 * 3600),  # capped at SQS's 12 hours
    ],
)
def test_busy_release_delay(lease_expires_ms: int, now_ms: int, expected: int) -> None:
    assert busy_release_delay(lease_expires_ms, now_ms) == expected


def test_busy_release_delay_bounds() -> None:
    assert MAX_VISIBILITY_SECONDS == 12 * 3600
    for lease in range(-(10**9), 10**9, 7_654_321):
        delay = busy_release_delay(lease, 0)
        assert 1 <= delay <= MAX_VISIBILITY_SECONDS
        if lease <= MAX_VISIBILITY_SECONDS * 1000:
            # Never makes the message visible before the lease would have ended.
            assert delay * 1000 > lease


def test_an_unknown_tasks_pause_grows_and_its_grace_period_ends_it() -> None:
    rng = random.Random(7)
    grace = 300_000
    first = [unknown_task_delay(0, 0, grace, rng) for _ in range(50)]
    assert set(first) <= {1, 2}
    later = [unknown_task_delay(0, 200_000, grace, rng) for _ in range(50)]
    assert set(later) <= {4, 5, 6, 7, 8}
    much_later = [unknown_task_delay(0, 3_000_000, 4_000_000, rng) for _ in range(50)]
    assert all(d is not None and 30 <= d <= 60 for d in much_later)
    assert unknown_task_delay(0, 299_500, grace, rng) == 1  # ends with the grace period
    assert unknown_task_delay(0, grace, grace, rng) is None
    assert unknown_task_delay(0, 0, 0, rng) is None  # no grace: fail at once
