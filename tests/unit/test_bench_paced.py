"""The benchmark's paced mode (loadtests/paced.py): its argument, pacing and percentiles."""

from __future__ import annotations

import argparse

import pytest
from loadtests.bench import main
from loadtests.paced import latency_summary, pace, positive_rate


@pytest.mark.parametrize("text", ["0", "-1", "x", "", "nan", "inf"])
def test_a_rate_that_is_not_a_positive_number_is_refused_with_a_sentence(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--rate must be a positive number"):
        positive_rate(text)


def test_the_command_line_exits_2_naming_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--rate", "0"])
    assert exc.value.code == 2
    assert "--rate must be a positive number of tasks per second" in capsys.readouterr().err


def test_a_rate_may_be_fractional() -> None:
    assert positive_rate("2.5") == 2.5


def test_latency_summary_gives_start_and_finish_percentiles_in_ms() -> None:
    # 100 tasks sent at t, started i ms later, finished 2i ms later (i = 1..100).
    rows = [(10.0, 10.0 + i / 1000, 10.0 + 2 * i / 1000) for i in range(1, 101)]
    summary = latency_summary(rows)
    assert summary["start_p50_ms"] == pytest.approx(51.0, abs=1)
    assert summary["start_p99_ms"] == pytest.approx(99.0, abs=1)
    assert summary["finish_p50_ms"] == pytest.approx(102.0, abs=2)
    assert summary["finish_p99_ms"] == pytest.approx(198.0, abs=2)


def test_latency_summary_of_no_tasks_is_zero() -> None:
    assert set(latency_summary([]).values()) == {0.0}


def test_pace_sends_on_a_fixed_schedule_that_a_late_send_does_not_shift() -> None:
    now = [0.0]
    sent: list[float] = []

    def send() -> None:
        sent.append(now[0])
        if len(sent) == 2:
            now[0] += 0.25  # one slow request: the next ones keep their times

    def sleep(seconds: float) -> None:
        now[0] += seconds

    pace(5, 10, send, clock=lambda: now[0], sleep=sleep)
    assert sent == pytest.approx([0.0, 0.1, 0.35, 0.35, 0.4])
