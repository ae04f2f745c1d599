"""Cancelling running tasks against the emulator: an inline attempt (the Lambda path)
told through its context and then stopped, a request left for the next claim, and
bulk cancel by filter (`services.cancel`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from stratoq.adapters.store import Claimed
from stratoq.adapters.transport import TaskMessage
from stratoq.core.clock import now_ms
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.observability.metrics import Metrics
from stratoq.services.cancel import CancelFilter, cancel_matching, cancel_task
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Disposition
from stratoq.services.leases import LeaseKeeper, Stop
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Action, Worker
from tests.support.procs import wait_for

CHECK = 0.2  # the inline attempts' cancel check, short for the test


def enqueue(core: Enqueuer, name: str, payload: object = None, **options: object) -> str:
    return core.enqueue(TaskRequest(name=name, payload=payload, **options)).task.id


def process_while(core: Enqueuer, act: Callable[[], None]) -> Disposition:
    """Run the queue's one message through an inline worker in this (main) thread, and
    `act` in another once its task is running."""
    worker = Worker(core.store, core.transport, InlineRunner(), cancel_check_seconds=CHECK)
    [delivery] = core.transport.receive("default", 10, 1, 30)
    tid = TaskMessage.decode(delivery.body).task_id

    def when_running() -> None:
        wait_for(lambda: core.store.get(tid).status is TaskStatus.RUNNING, 10, "the run")
        act()

    helper = threading.Thread(target=when_running)
    helper.start()
    try:
        return worker.process(delivery)
    finally:
        helper.join(10)


@pytest.mark.parametrize("name", ["until_cancelled", "cpu"])
def test_an_inline_attempt_is_told_and_then_stopped(
    core: Enqueuer, tmp_path: Path, name: str
) -> None:
    # `until_cancelled` checks the flag and returns; `cpu` ignores it and is interrupted.
    log = tmp_path / "seen.log"
    payload = {"seconds": 60, "path": str(log)}
    tid = enqueue(core, name, payload, max_attempts=3)
    started = time.monotonic()
    done = process_while(core, lambda: cancel_task(core.store, Metrics(), tid, "default"))
    assert (done.action, done.status) == (Action.ACK, "cancelled")
    assert time.monotonic() - started < 10
    task = core.store.get(tid)
    assert (task.status, task.attempts) == (TaskStatus.CANCELLED, 1)
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, "cancelled")]
    assert task.cancel_requested_at is not None and task.result is None
    seen = log.read_text().splitlines() if log.exists() else []
    assert seen == ([f"saw cancel {tid}"] if name == "until_cancelled" else [])
    # No retry follows: nothing is left on the queue.
    assert core.transport.receive("default", 10, 1, 30) == []


def test_a_request_outliving_its_attempt_ends_the_task_at_the_next_claim(
    core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    tid = enqueue(core, "record", {"path": str(log)})
    now = now_ms()
    # A worker claimed it with a 1 s lease and died; meanwhile a user cancelled it.
    assert isinstance(core.store.claim(tid, "default", now, 1_000), Claimed)
    assert cancel_task(core.store, Metrics(), tid, "default").status is TaskStatus.RUNNING
    [delivery] = core.transport.receive("default", 10, 1, 30)
    later = Worker(core.store, core.transport, InlineRunner(), clock=lambda: now + 3_000)
    assert later.process(delivery).status == "cancelled"
    task = core.store.get(tid)
    assert (task.status, task.attempts) == (TaskStatus.CANCELLED, 1)
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, "cancelled")]
    assert not log.exists()  # never ran again


def test_bulk_cancel_by_filter(core: Enqueuer) -> None:
    def make(name: str, queue: str = "default", **options: object) -> Task:
        return core.enqueue(TaskRequest(name=name, queue=queue, **options)).task

    old = [make("echo", delay_seconds=600) for _ in range(3)]
    cutoff = old[-1].created_at + timedelta(milliseconds=1)
    wait_for(lambda: now_ms() > int(cutoff.timestamp() * 1000), 5, "a later millisecond")
    new = [make("echo", delay_seconds=600) for _ in range(2)]
    other = make("sleep", delay_seconds=600)
    running = make("echo")
    assert isinstance(core.store.claim(running.id, "default", now_ms(), 60_000), Claimed)
    finished = make("echo", delay_seconds=600)
    core.store.cancel(finished.id, "default", now_ms())

    def status(task: Task) -> TaskStatus:
        got = core.store.get(task.id)
        assert got is not None
        return got.status

    metrics = Metrics()
    report = cancel_matching(
        core.store, metrics, "default", CancelFilter(name="echo", created_before=cutoff)
    )
    assert (report.cancelled, report.requested, report.more) == (3, 0, False)
    assert [status(t) for t in old + new] == [TaskStatus.CANCELLED] * 3 + [TaskStatus.SCHEDULED] * 2

    # Newest first: the running one, asked to stop; then max_tasks says there is more.
    report = cancel_matching(core.store, metrics, "default", CancelFilter(name="echo"), 1)
    assert (report.cancelled, report.requested, report.more) == (0, 1, True)
    report = cancel_matching(core.store, metrics, "default", CancelFilter(queue="default"))
    assert (report.cancelled, report.requested) == (3, 1)  # new, other; running (again)
    assert status(other) is TaskStatus.CANCELLED
    assert status(running) is TaskStatus.RUNNING
    assert core.store.get(running.id).cancel_requested_at is not None
    # Another tenant's filter finds none of them.
    assert cancel_matching(core.store, metrics, "nobody", CancelFilter(name="echo")).cancelled == 0


def test_the_heartbeat_sees_a_cancel_in_its_renewal_and_stops_the_attempt(core: Enqueuer) -> None:
    tid = enqueue(core, "echo")
    [delivery] = core.transport.receive("default", 10, 1, 30)
    claim = core.store.claim(tid, "default", now_ms(), 30_000)
    assert isinstance(claim, Claimed)
    keeper = LeaseKeeper(core.store, core.transport, lease_seconds=30)
    lost = keeper.track(delivery, tid, claim.token)
    keeper.beat()
    assert not lost.is_set()
    cancel_task(core.store, Metrics(), tid, "default")
    keeper.beat()
    assert lost.is_set()
    assert keeper.untrack(claim.token) is Stop.CANCELLED
