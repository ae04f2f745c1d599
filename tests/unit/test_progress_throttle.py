"""Throttling of progress reports (issue 21, item 2): at most about one store write a
second per attempt, the latest report winning, the last one written at the end."""

from __future__ import annotations

from typing import Any

import pytest

from stratoq.adapters.progress import ProgressStore
from stratoq.core.policy import PROGRESS_INTERVAL_MS, progress_due
from stratoq.core.registry import TaskContext, run_handler
from stratoq.services.progress import AttemptProgress

CTX = TaskContext("t1", "job", 1, 3, 60, "token-1", tenant="acme")


class Recorded(ProgressStore):
    """The store's interface, keeping the writes it is asked for."""

    def __init__(self) -> None:
        self.writes: list[tuple[Any, ...]] = []

    def write(self, *args: Any) -> bool:
        self.writes.append(args)
        return True


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def test_progress_is_due_first_and_then_once_per_interval() -> None:
    assert progress_due(None, 5)
    assert not progress_due(1000, 1000 + PROGRESS_INTERVAL_MS - 1)
    assert progress_due(1000, 1000 + PROGRESS_INTERVAL_MS)


def test_a_burst_costs_one_write_and_the_latest_report_is_written_at_the_end() -> None:
    store, clock = Recorded(), Clock()
    reporter = AttemptProgress(store, CTX, clock)
    for i in range(100):
        reporter.report(i / 100, f"step {i}")
        clock.ms += 5  # 100 reports in half a second
    assert store.writes == [("t1", "acme", "token-1", 0.0, "step 0", 1_000_000)]
    reporter.close()
    assert store.writes[-1] == ("t1", "acme", "token-1", 0.99, "step 99", 1_000_495)
    assert len(store.writes) == 2


def test_a_report_after_the_interval_is_written_at_once() -> None:
    store, clock = Recorded(), Clock()
    reporter = AttemptProgress(store, CTX, clock)
    reporter.report(0.1, None)
    clock.ms += PROGRESS_INTERVAL_MS
    reporter.report(0.2, None)
    assert [w[3] for w in store.writes] == [0.1, 0.2]
    reporter.close()  # nothing held back: no third write
    assert len(store.writes) == 2


def test_ten_seconds_of_reports_every_10_ms_cost_about_ten_writes() -> None:
    store, clock = Recorded(), Clock()
    reporter = AttemptProgress(store, CTX, clock)
    for _ in range(1000):
        reporter.report(0.5, None)
        clock.ms += 10
    reporter.close()
    assert 10 <= len(store.writes) <= 12


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.1, None),
        (1.5, None),
        (50, None),
        (float("nan"), None),
        (True, None),
        ("0.5", None),
        (0.5, "x" * 257),
    ],
)
def test_a_bad_report_raises_in_the_handler(value: Any, message: str | None) -> None:
    from stratoq.core.registry import context

    def handler(payload: Any) -> None:
        context().progress(value, message)

    with pytest.raises(ValueError, match="progress"):
        run_handler(handler, None, CTX, lambda v, m: None)


def test_reports_reach_the_reporter_as_fractions() -> None:
    from stratoq.core.registry import context

    got: list[tuple[float, str | None]] = []
    run_handler(
        lambda p: context().progress(1, "x" * 256), None, CTX, lambda v, m: got.append((v, m))
    )
    assert got == [(1.0, "x" * 256)]
