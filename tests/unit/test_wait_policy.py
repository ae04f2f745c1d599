"""The schedule of re-reads behind `GET /v1/tasks/{id}?wait=` (issue 21, item 3)."""

from __future__ import annotations

import pytest

from stratoq.core.policy import RECHECK_MAX_SECONDS, RECHECK_MIN_SECONDS, recheck_delay


def schedule(wait: float) -> list[float]:
    """Every pause of a wait of `wait` seconds that never sees the task end, on a clock
    that moves only by the pauses."""
    now, pauses = 100.0, []
    started, deadline = now, now + wait
    while (pause := recheck_delay(started, now, deadline)) is not None:
        pauses.append(pause)
        now += pause
    return pauses


def test_pauses_start_short_and_grow_to_the_cap() -> None:
    pauses = schedule(20)
    assert pauses[0] == RECHECK_MIN_SECONDS
    assert pauses == sorted(pauses[:-1]) + pauses[-1:]  # growing, but for the clipped last
    assert max(pauses) == RECHECK_MAX_SECONDS


def test_a_full_wait_costs_tens_of_reads_and_ends_on_time() -> None:
    pauses = schedule(20)
    # One read before the first pause and one after each: about 50 for 20 s, far below
    # the 400 of a steady 50 ms pace.
    assert 30 <= len(pauses) + 1 <= 55
    assert sum(pauses) == pytest.approx(20)


def test_the_last_pause_ends_at_the_deadline() -> None:
    assert recheck_delay(0.0, 9.9, 10.0) == pytest.approx(0.1)


@pytest.mark.parametrize("now", [10.0, 10.5])
def test_no_pause_once_the_time_is_up(now: float) -> None:
    assert recheck_delay(0.0, now, 10.0) is None


def test_a_zero_wait_reads_once() -> None:
    assert schedule(0) == []
