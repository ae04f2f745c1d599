"""The Lambda path's hard timeout (SIGALRM in the main thread) leaves an alarm that was
already pending, such as pytest-timeout's around a test in eager mode, as it found it."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest

from stratoq.core import registry
from stratoq.core.policy import OutcomeKind
from stratoq.core.registry import TaskContext
from stratoq.services.runner import InlineRunner, Job


@registry.task("unit-inline-runner-quick")
def quick(payload: int) -> int:
    return payload + 1


def job(timeout: int) -> Job:
    ctx = TaskContext("t1", "unit-inline-runner-quick", 1, 1, timeout, "tok")
    return Job("unit-inline-runner-quick", 41, ctx)


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="SIGALRM: main thread"
)
def test_a_pending_alarm_survives_a_task_run_inline() -> None:
    fired: list[int] = []

    def outer_alarm(signum: int, frame: FrameType | None) -> None:
        fired.append(signum)

    saved_handler = signal.signal(signal.SIGALRM, outer_alarm)
    saved_timer = signal.setitimer(signal.ITIMER_REAL, 30)
    try:
        outcome = InlineRunner().run(job(timeout=5))
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        handler = signal.getsignal(signal.SIGALRM)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *saved_timer)
        signal.signal(signal.SIGALRM, saved_handler)
    assert (outcome.kind, outcome.result) == (OutcomeKind.SUCCESS, 42)
    assert handler is outer_alarm
    assert 25 < left <= 30
    assert fired == []
