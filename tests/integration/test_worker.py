"""Worker.process against the emulator: outcomes, retries, duplicates, leases, delays."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from stratoq.adapters.store import Claimed
from stratoq.adapters.transport import TaskMessage
from stratoq.core.clock import to_ms
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Action, Worker
from tests.support.pump import pump_until_final, queue_counts

NO_JITTER = {"base_seconds": 1, "max_seconds": 60, "jitter": False}


@pytest.fixture
def worker(core: Enqueuer) -> Worker:
    return Worker(core.store, core.transport, InlineRunner())


def enqueue(core: Enqueuer, name: str, payload: object = None, **options: object) -> str:
    return core.enqueue(TaskRequest(name=name, payload=payload, **options)).task.id


def lines(path: Path, kind: str) -> list[str]:
    return (
        [ln for ln in path.read_text().splitlines() if ln.startswith(kind)] if path.exists() else []
    )


def test_success_records_result_and_acks(core: Enqueuer, worker: Worker) -> None:
    tid = enqueue(core, "echo", {"hello": ["world", 1]})
    assert core.store.get(tid).status is TaskStatus.QUEUED
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.SUCCEEDED
    assert task.result == {"hello": ["world", 1]}
    assert task.attempts == 1
    assert task.finished_at is not None and task.started_at is not None
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_retries_with_exponential_backoff_then_succeeds(core: Enqueuer, worker: Worker) -> None:
    tid = enqueue(core, "fail", {"times": 2}, backoff=NO_JITTER)
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.SUCCEEDED
    assert task.attempts == 3
    assert task.result == {"attempt": 3}
    assert [e.attempt for e in task.errors] == [1, 2]
    assert all(e.kind == "error" and "failing on purpose" in e.message for e in task.errors)
    # Attempt 2 waits base*2**0 = 1 s after attempt 1 failed, attempt 3 waits 2 s.
    first_gap = (task.errors[1].at - task.errors[0].at).total_seconds()
    second_gap = (task.started_at - task.errors[1].at).total_seconds()
    assert 1.0 <= first_gap < 4.0
    assert 2.0 <= second_gap < 5.0


def test_retries_exhausted_fail_and_keep_every_error(core: Enqueuer, worker: Worker) -> None:
    tid = enqueue(core, "fail", {}, max_attempts=3, backoff={"base_seconds": 0})
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 3
    assert [e.attempt for e in task.errors] == [1, 2, 3]
    assert task.error is None and "attempt 3" in task.errors[-1].message
    assert queue_counts(core)["visible"] + queue_counts(core)["in_flight"] == 0


def test_retry_exception_sets_the_delay(core: Enqueuer, worker: Worker) -> None:
    tid = enqueue(core, "retry_after", {"delay": 2})
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.SUCCEEDED and task.result == 2
    assert task.errors[0].kind == "retry" and task.errors[0].message == "asked to come back later"
    assert (task.started_at - task.errors[0].at).total_seconds() >= 2.0


@pytest.mark.parametrize(
    ("name", "kind", "fragment"),
    [
        ("give_up", "fail", "the input can never work"),
        ("no_such_task", "unknown_task", "no handler registered for task 'no_such_task'"),
        ("not_json", "fail", "not JSON-serialisable"),
    ],
)
def test_permanent_failures_stop_at_once(
    core: Enqueuer, name: str, kind: str, fragment: str
) -> None:
    # No grace period: a name no handler here has fails at once (by default it is first
    # handed back for other workers: tests/integration/test_unknown_tasks.py).
    worker = Worker(core.store, core.transport, InlineRunner(), unknown_task_grace_seconds=0)
    tid = enqueue(core, name, max_attempts=5)
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 1
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, kind)]
    assert fragment in task.errors[0].message


def test_same_message_delivered_twice_concurrently_runs_once(
    core: Enqueuer, worker: Worker, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    tid = enqueue(core, "record", {"path": str(log), "sleep": 1.0})
    [delivery] = core.transport.receive("default", 10, 1, 30)
    results = []

    def deliver() -> None:
        results.append(worker.process(delivery))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(d.status for d in results) == ["busy", "succeeded"]
    busy = next(d for d in results if d.status == "busy")
    assert busy.action is Action.RELEASE and busy.delay >= 1
    assert len(lines(log, "start")) == 1
    # A late duplicate of the finished task is acknowledged without running.
    again = worker.process(delivery)
    assert again.action is Action.ACK and again.status == "duplicate"
    assert len(lines(log, "start")) == 1
    assert core.store.get(tid).attempts == 1


def test_crashed_holder_is_taken_over_after_its_lease(core: Enqueuer, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tid = enqueue(core, "record", {"path": str(log)})
    now = to_ms_now()
    # A worker claimed the task with a 5 s lease and died without recording anything.
    assert isinstance(core.store.claim(tid, "default", now, 5_000), Claimed)
    [delivery] = core.transport.receive("default", 10, 1, 30)
    early = Worker(core.store, core.transport, InlineRunner(), clock=lambda: now + 1_000)
    refused = early.process(delivery)
    assert refused.action is Action.RELEASE and refused.status == "busy"
    assert 4 <= refused.delay <= 6  # comes back when the dead worker's lease runs out
    late = Worker(core.store, core.transport, InlineRunner(), clock=lambda: now + 6_000)
    done = late.process(delivery)
    assert done.status == "succeeded"
    task = core.store.get(tid)
    assert task.status is TaskStatus.SUCCEEDED and task.attempts == 2
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, "lost")]
    assert len(lines(log, "end")) == 1


def test_lost_last_attempt_fails_without_running_again(core: Enqueuer, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    tid = enqueue(core, "record", {"path": str(log)}, max_attempts=1)
    now = to_ms_now()
    assert isinstance(core.store.claim(tid, "default", now, 1_000), Claimed)
    [delivery] = core.transport.receive("default", 10, 1, 30)
    later = Worker(core.store, core.transport, InlineRunner(), clock=lambda: now + 2_000)
    assert later.process(delivery).status == "failed"
    task = core.store.get(tid)
    assert task.status is TaskStatus.FAILED and task.attempts == 1
    assert task.errors[0].kind == "lost"
    assert not log.exists()


def test_cpu_bound_task_is_stopped_by_its_timeout_and_retried(
    core: Enqueuer, worker: Worker
) -> None:
    tid = enqueue(core, "cpu", {"seconds": 60}, timeout_seconds=1, max_attempts=2)
    [delivery] = core.transport.receive("default", 10, 1, 30)
    started = time.monotonic()
    disposition = worker.process(delivery)  # main thread: SIGALRM interrupts the loop
    assert time.monotonic() - started < 3.0
    assert disposition.status == "retrying"
    task = core.store.get(tid)
    assert task.status is TaskStatus.RETRYING
    assert task.errors[0].kind == "timeout" and "timed out after 1 s" in task.errors[0].message


def test_short_delay_is_honoured(core: Enqueuer, worker: Worker) -> None:
    tid = enqueue(core, "echo", 1, delay_seconds=2)
    assert core.store.get(tid).status is TaskStatus.SCHEDULED
    assert core.transport.receive("default", 10, 0, 30) == []
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.SUCCEEDED
    assert (task.started_at - task.created_at).total_seconds() >= 1.9


def test_long_delay_hops_without_running_early(core: Enqueuer) -> None:
    tid = enqueue(core, "echo", 1, delay_seconds=3 * 3600)
    task = core.store.get(tid)
    assert task.status is TaskStatus.SCHEDULED
    due = to_ms(task.next_attempt_at)
    assert due is not None
    assert (task.next_attempt_at - task.created_at).total_seconds() == pytest.approx(10800, abs=1)
    assert queue_counts(core)["delayed"] == 1  # the first 15-minute hop
    # Deliver a hop message now (as SQS would after 15 minutes): it is re-delayed.
    core.transport.client.purge_queue(QueueUrl=core.transport.url("default"))
    core.transport.client.send_message(
        QueueUrl=core.transport.url("default"),
        MessageBody=TaskMessage(tid, "default", due).encode(),
    )
    [delivery] = core.transport.receive("default", 10, 1, 30)
    early = Worker(core.store, core.transport, InlineRunner(), clock=lambda: due - 7200_000)
    hop = early.process(delivery)
    assert hop.action is Action.ACK and hop.status == "hop"
    core.transport.delete([delivery])
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 1}
    assert core.store.get(tid).attempts == 0
    # When it is due, the same kind of message runs the task.
    core.transport.client.send_message(
        QueueUrl=core.transport.url("default"),
        MessageBody=TaskMessage(tid, "default", due).encode(),
    )
    [delivery] = core.transport.receive("default", 10, 1, 30)
    on_time = Worker(core.store, core.transport, InlineRunner(), clock=lambda: due + 10)
    assert on_time.process(delivery).status == "succeeded"


def test_run_at_far_ahead_is_stored_and_not_claimable_early(core: Enqueuer) -> None:
    from datetime import UTC, datetime, timedelta

    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    tid = enqueue(core, "echo", run_at=run_at)
    task = core.store.get(tid)
    assert task.status is TaskStatus.SCHEDULED
    assert task.scheduled_for == run_at and task.next_attempt_at == run_at
    # Even a message without a due time cannot start it early.
    core.transport.client.send_message(
        QueueUrl=core.transport.url("default"), MessageBody=TaskMessage(tid, "default").encode()
    )
    deliveries = core.transport.receive("default", 10, 1, 30)
    [delivery] = [d for d in deliveries if TaskMessage.decode(d.body).not_before_ms is None]
    refused = Worker(core.store, core.transport, InlineRunner()).process(delivery)
    assert refused.action is Action.RELEASE and refused.status == "early"
    assert core.store.get(tid).attempts == 0


def test_messages_that_keep_crashing_workers_go_to_the_dlq(core: Enqueuer) -> None:
    import json

    enqueue(core, "echo", 1)
    sqs = core.transport.client
    url = core.transport.url("default")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
    policy = json.loads(attrs["Attributes"]["RedrivePolicy"])
    # Each receive that is never acknowledged is a worker that died before recording.
    for _ in range(int(policy["maxReceiveCount"])):
        assert len(sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]) == 1
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages", []) == []
    dlq = sqs.get_queue_url(QueueName=policy["deadLetterTargetArn"].split(":")[-1])["QueueUrl"]
    assert queue_counts(core, dlq)["visible"] == 1


def test_malformed_message_is_dropped(core: Enqueuer, worker: Worker) -> None:
    url = core.transport.url("default")
    core.transport.client.send_message(QueueUrl=url, MessageBody="not json")
    [delivery] = core.transport.receive("default", 10, 1, 30)
    assert worker.process(delivery).status == "malformed"


def to_ms_now() -> int:
    return int(time.time() * 1000)
