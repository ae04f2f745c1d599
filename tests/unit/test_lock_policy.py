"""policy.locked_delay: how long a task whose lock is held waits (pure, seeded)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from stratoq.core.models import MAX_SQS_DELAY
from stratoq.core.policy import MAX_LOCKED_DELAY, locked_delay

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("remaining_ms", "upper"),
    [
        (-5_000, 1),  # the hold already ended: look again at once (1 s, SQS's minimum)
        (0, 1),
        (1, 2),  # a millisecond left rounds up to a second, plus one
        (2_500, 4),
        (3_000, 4),
        (30_000, 31),
        (10 * 60_000, MAX_LOCKED_DELAY),  # a long hold is capped
    ],
)
def test_locked_delay_stays_within_the_holders_remaining_hold(
    remaining_ms: int, upper: int
) -> None:
    rng = random.Random(7)
    delays = {locked_delay(NOW + remaining_ms, NOW, rng) for _ in range(500)}
    assert min(delays) >= 1
    assert max(delays) <= upper
    # Full jitter: the whole range is used, not just its ends.
    assert delays == set(range(1, upper + 1))


def test_locked_delay_spreads_waiters_of_one_lock() -> None:
    rng = random.Random(11)
    counts = Counter(locked_delay(NOW + 30_000, NOW, rng) for _ in range(3100))
    # 31 possible seconds, 100 waiters each on average: none gets a crowd.
    assert max(counts.values()) < 160


def test_locked_delay_cap_is_a_parameter_and_never_beyond_sqs() -> None:
    rng = random.Random(3)
    assert {locked_delay(NOW + 60_000, NOW, rng, cap=5) for _ in range(200)} == set(range(1, 6))
    big = [locked_delay(NOW + 10**9, NOW, rng, cap=10**6) for _ in range(200)]
    assert max(big) <= MAX_SQS_DELAY


def test_locked_delay_is_deterministic_for_a_seeded_rng() -> None:
    first = [locked_delay(NOW + 20_000, NOW, random.Random(5)) for _ in range(3)]
    assert len(set(first)) == 1
