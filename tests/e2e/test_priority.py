"""Priorities with a real `stratoq worker`: high-priority tasks overtake a low backlog."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.support.procs import stratoq, wait_for

LOW_BACKLOG = 40
HIGH = 10


def run_backlog(
    settings: Settings, core: Enqueuer, tmp_path: Path, *mode: str
) -> tuple[list[Task], list[Task]]:
    """Enqueue LOW_BACKLOG low tasks, then HIGH high ones, then let one poller with one
    slot (one task at a time, so finish order is run order) work through them all."""
    low = core.enqueue_many(
        [TaskRequest(name="echo", payload=i, priority="low") for i in range(LOW_BACKLOG)]
    )
    high = core.enqueue_many(
        [TaskRequest(name="echo", payload=i, priority="high") for i in range(HIGH)]
    )
    ids = [r.task.id for r in low + high]

    def done() -> list[Task] | None:
        tasks = [core.store.get(i) for i in ids]
        return (
            [t for t in tasks if t is not None]
            if all(t and t.status.final for t in tasks)
            else None
        )

    with stratoq(settings, tmp_path, "worker", "--concurrency", "1", *mode) as poller:
        tasks = wait_for(done, 120, f"{len(ids)} tasks to finish")
        poller.signal(signal.SIGTERM)
        assert poller.wait(30) == 0, poller.output()
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in tasks)
    return tasks[:LOW_BACKLOG], tasks[LOW_BACKLOG:]


def test_strict_mode_runs_every_high_task_before_the_low_backlog(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    low, high = run_backlog(settings, core, tmp_path, "--priority-mode", "strict")
    last_high = max(t.finished_at for t in high if t.finished_at)
    first_low = min(t.started_at for t in low if t.started_at)
    # Every low task was waiting when the poller started; none ran until high was empty.
    assert last_high <= first_low


def test_weighted_mode_runs_high_tasks_well_ahead_of_the_backlogs_end(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    low, high = run_backlog(
        settings, core, tmp_path, "--priority-mode", "weighted", "--priority-weights", "6,3,1"
    )
    last_high = max(t.finished_at for t in high if t.finished_at)
    low_before = sum(1 for t in low if t.finished_at and t.finished_at < last_high)
    # With default empty each receive takes low with probability 1/(6+1), so the number
    # of low tasks run before the 10th high one is negative binomial (10, 6/7): mean
    # 1.7, and more than 15 has probability below 2e-8. FIFO would have run all 40.
    assert low_before <= 15
    assert low_before < LOW_BACKLOG


def test_an_idle_poller_takes_a_task_on_any_of_its_queues_promptly(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    # With the longest long poll SQS allows, a poller that waited on one priority queue
    # at a time (then 7 s each) left a task on another waiting that long; waiting on all
    # three at once, it takes each as soon as it is sent. The bound is generous for a
    # shared machine and still well under one such wait; the figures are the benchmark's.
    env = {"STRATOQ_POLL_WAIT_SECONDS": "20"}
    # Not stopped with SIGTERM: an idle poller's stop waits out its long polls (20 s).
    with stratoq(settings, tmp_path, "worker", "--concurrency", "2", env=env) as poller:
        warm = core.enqueue(TaskRequest(name="echo", payload="warm")).task.id
        wait_for(lambda: finished(core, warm), 60, "the first task (slots start)")
        for round_ in range(2):
            for priority in ("low", "default", "high"):
                tid = core.enqueue(TaskRequest(name="echo", payload=round_, priority=priority))
                wait_for(
                    lambda: finished(core, tid.task.id),  # noqa: B023
                    4.5,
                    f"the {priority} task of an idle poller",
                )
        assert poller.popen.poll() is None, poller.output()


def finished(core: Enqueuer, task_id: str) -> bool:
    task = core.store.get(task_id)
    return task is not None and task.status is TaskStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--priority-mode", "urgent"), "--priority-mode must be weighted or strict"),
        (("--priority-weights", "6,3"), "--priority-weights must be three whole numbers"),
    ],
)
def test_bad_priority_options_exit_2_with_a_sentence(
    settings: Settings, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    with stratoq(settings, tmp_path, "worker", *args) as proc:
        assert proc.wait(60) == 2
        assert message in proc.output()
