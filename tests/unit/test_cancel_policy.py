"""Cancel's pure decisions: what a cancel does in each status, how often a running
attempt can learn of one, which tasks a bulk cancel takes; and how an inline runner
stops a handler it was told to stop waiting for."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from stratoq.core import registry
from stratoq.core.models import Task, TaskStatus
from stratoq.core.policy import (
    CANCEL_CHECK_SECONDS,
    CancelAction,
    OutcomeKind,
    cancel_action,
    heartbeat_seconds,
)
from stratoq.core.registry import TaskContext, cancel_check
from stratoq.services.cancel import CancelFilter
from stratoq.services.runner import InlineRunner, Job


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (TaskStatus.QUEUED, CancelAction.NOW),
        (TaskStatus.SCHEDULED, CancelAction.NOW),
        (TaskStatus.RETRYING, CancelAction.NOW),
        (TaskStatus.RUNNING, CancelAction.REQUEST),
        (TaskStatus.SUCCEEDED, CancelAction.REFUSE),
        (TaskStatus.FAILED, CancelAction.REFUSE),
        (TaskStatus.CANCELLED, CancelAction.REFUSE),
    ],
)
def test_cancel_action_by_status(status: TaskStatus, action: CancelAction) -> None:
    assert cancel_action(status) is action


@pytest.mark.parametrize(("lease", "beat"), [(30, 5), (300, 5), (9, 3), (2, 2 / 3), (1, 0.5)])
def test_the_heartbeat_renews_a_third_of_a_lease_and_sees_a_cancel_within_seconds(
    lease: int, beat: float
) -> None:
    assert heartbeat_seconds(lease) == pytest.approx(beat)
    assert heartbeat_seconds(lease) <= CANCEL_CHECK_SECONDS


def task(**fields: object) -> Task:
    defaults: dict[str, object] = {
        "id": "t",
        "name": "echo",
        "status": TaskStatus.QUEUED,
        "max_attempts": 1,
        "timeout_seconds": 1,
        "created_at": datetime(2030, 1, 1, tzinfo=UTC),
    }
    return Task.model_validate({**defaults, **fields})


def test_a_bulk_filter_refuses_a_final_status_and_matches_by_queue() -> None:
    with pytest.raises(ValueError, match="succeeded"):
        CancelFilter(status=TaskStatus.SUCCEEDED)
    which = CancelFilter(queue="emails")
    assert which.matches(task(queue="emails"))
    assert which.matches(task(queue="emails", status=TaskStatus.RUNNING))
    assert not which.matches(task(queue="default"))
    assert not which.matches(task(queue="emails", status=TaskStatus.CANCELLED))


def test_the_context_flag_reads_the_bound_check() -> None:
    ctx = TaskContext("t1", "n", 1, 1, 5, "tok")
    assert ctx.cancelled is False
    flag = threading.Event()
    with cancel_check(flag.is_set):
        assert ctx.cancelled is False
        flag.set()
        assert ctx.cancelled is True
    assert ctx.cancelled is False


@registry.task("unit-cancel-sleeper")
def sleeper(payload: float) -> str:
    # Short sleeps: outside the main thread a handler is interrupted between bytecodes.
    deadline = time.monotonic() + payload
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return "woke"


def run_told_to_stop() -> tuple[OutcomeKind, float]:
    stop = threading.Event()
    ctx = TaskContext("t1", "unit-cancel-sleeper", 1, 1, 30, "tok")
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    outcome = InlineRunner().run(Job("unit-cancel-sleeper", 20.0, ctx), stop)
    return outcome.kind, time.monotonic() - started


def test_an_inline_handler_is_stopped_when_told_in_the_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGALRM: main thread")
    kind, took = run_told_to_stop()
    assert kind is OutcomeKind.CANCELLED
    assert took < 3


def test_an_inline_handler_is_stopped_when_told_in_another_thread() -> None:
    got: list[tuple[OutcomeKind, float]] = []
    thread = threading.Thread(target=lambda: got.append(run_told_to_stop()))
    thread.start()
    thread.join(10)
    assert got and got[0][0] is OutcomeKind.CANCELLED
    assert got[0][1] < 3
