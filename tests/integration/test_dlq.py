"""Dead tasks against the emulator: DLQ redrive, bulk retry, the failed-task listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoq.core.errors import EnqueueError
from stratoq.core.models import Task, TaskRequest, TaskStatus, utcnow
from stratoq.services import dlq
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import pump_until_final


@pytest.fixture
def worker(core: Enqueuer) -> Worker:
    return Worker(core.store, core.transport, InlineRunner())


def dlq_url(core: Enqueuer) -> str:
    url = core.transport.dead_letter_url("default")
    assert url is not None
    return url


def dlq_count(core: Enqueuer) -> int:
    attrs = core.transport.client.get_queue_attributes(
        QueueUrl=dlq_url(core),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def to_dlq(core: Enqueuer, *bodies: str) -> None:
    for body in bodies:
        core.transport.client.send_message(QueueUrl=dlq_url(core), MessageBody=body)


def body(task_id: str, tenant: str = "default") -> str:
    return json.dumps({"id": task_id, "t": tenant})


def failed_task(core: Enqueuer, worker: Worker, flag: Path) -> Task:
    """A task that failed for good (fail_while fails while `flag` exists)."""
    flag.touch()
    tid = core.enqueue(TaskRequest(name="fail_while", payload={"path": str(flag)})).task.id
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.FAILED
    return task


def test_a_poison_message_moved_by_max_receive_count_is_redriven(
    core: Enqueuer, worker: Worker
) -> None:
    tid = core.enqueue(TaskRequest(name="echo", payload={"poison": True})).task.id
    main = core.transport.url("default")
    # Workers that crash before recording anything: received, never deleted, visible
    # again at once, until SQS's maxReceiveCount moves the message to the DLQ.
    for _ in range(30):
        if dlq_count(core):
            break
        core.transport.client.receive_message(QueueUrl=main, VisibilityTimeout=0)
    assert dlq_count(core) == 1
    assert core.store.get(tid).status is TaskStatus.QUEUED

    report = dlq.redrive(core, "default")
    assert (report.received, report.resent, report.redriven, report.dropped) == (1, 1, 0, 0)
    assert report.more is False
    assert dlq_count(core) == 0
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.SUCCEEDED
    assert task.attempts == 1


def test_a_failed_task_is_requeued_and_runs_to_success(
    core: Enqueuer, worker: Worker, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    task = failed_task(core, worker, flag)
    to_dlq(core, body(task.id), body(task.id))  # two copies: one task, one message
    flag.unlink()  # the cause is fixed

    report = dlq.redrive(core, "default")
    assert (report.received, report.redriven, report.dropped) == (2, 1, 1)
    queued = core.store.get(task.id)
    assert queued.status is TaskStatus.QUEUED and queued.attempts == 0
    assert dlq_count(core) == 0
    [done] = pump_until_final(core, worker, [task.id])
    assert done.status is TaskStatus.SUCCEEDED
    assert done.attempts == 1
    assert [e.kind for e in done.errors] == ["fail"]  # the history is kept


def test_missing_finished_foreign_and_malformed_messages_are_dropped(
    core: Enqueuer, worker: Worker
) -> None:
    done = core.enqueue(TaskRequest(name="echo")).task.id
    pump_until_final(core, worker, [done])
    to_dlq(
        core,
        body(done),
        body("0" * 32),
        body(done, tenant="someone-else"),
        "not json",
        json.dumps({"no": "id"}),
    )
    report = dlq.redrive(core, "default")
    assert (report.received, report.dropped, report.resent, report.redriven) == (5, 5, 0, 0)
    assert dlq_count(core) == 0
    assert core.store.get(done).status is TaskStatus.SUCCEEDED


def test_max_messages_bounds_a_redrive(core: Enqueuer, worker: Worker) -> None:
    tasks = core.enqueue_many([TaskRequest(name="echo", payload=i) for i in range(13)])
    for _ in range(13 * 3):  # drain the main queue without running anything
        for d in core.transport.receive("default", 10, 0, 60):
            core.transport.delete([d])
    to_dlq(core, *(body(r.task.id) for r in tasks))

    first = dlq.redrive(core, "default", max_messages=12)
    assert (first.received, first.resent, first.more) == (12, 12, True)
    assert dlq_count(core) == 1
    rest = dlq.redrive(core, "default")
    assert (rest.received, rest.resent, rest.more) == (1, 1, False)
    done = pump_until_final(core, worker, [r.task.id for r in tasks])
    assert {t.status for t in done} == {TaskStatus.SUCCEEDED}


def test_a_failed_send_leaves_the_message_in_the_dlq(
    core: Enqueuer, worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = failed_task(core, worker, tmp_path / "broken")
    to_dlq(core, body(task.id))

    def refuse(*args: object, **kwargs: object) -> None:
        raise EnqueueError("SQS is down")

    monkeypatch.setattr(core, "send_tasks", refuse)
    report = dlq.redrive(core, "default")
    assert (report.received, report.left, report.redriven) == (1, 1, 0)
    assert dlq_count(core) == 1  # still there (invisible until its receive lapses)
    # The task was requeued before the send: the next redrive resends it.
    assert core.store.get(task.id).status is TaskStatus.QUEUED


def test_a_queue_without_a_dlq_is_not_found(core: Enqueuer) -> None:
    for key in dlq.queue_keys(core, "default"):  # the default queue and its priorities
        url = core.transport.url(key)
        core.transport.client.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})
    if core.transport.dead_letter_url("default") is not None:
        pytest.skip("this emulator keeps an emptied redrive policy")
    with pytest.raises(dlq.NoDeadLetterQueueError):
        dlq.redrive(core, "default")


# -------------------------------------------------------- failed tasks, in bulk
def many_failed(core: Enqueuer, count: int, name: str = "echo") -> list[str]:
    """`count` failed tasks, stored directly (as a worker's last attempt leaves them)."""
    now = utcnow()
    tasks = [
        core.build(TaskRequest(name=name, payload=i)).model_copy(
            update={"status": TaskStatus.FAILED, "finished_at": now, "attempts": 1}
        )
        for i in range(count)
    ]
    core.store.create_many(tasks)
    return [t.id for t in tasks]


def test_every_failed_task_is_listed_page_by_page(core: Enqueuer) -> None:
    ids = many_failed(core, 23)
    core.enqueue(TaskRequest(name="echo"))  # not failed: never listed
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page, token = core.store.list_tasks(
            "default", TaskStatus.FAILED, limit=10, next_token=token
        )
        pages += 1
        seen.extend(t.id for t in page)
        if token is None:
            break
    assert pages >= 3
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)  # newest first


def test_retry_failed_requeues_in_bulk(core: Enqueuer, worker: Worker) -> None:
    echo = many_failed(core, 7)
    other = many_failed(core, 2, name="sleep")
    by_name = dlq.retry_failed(core, "default", dlq.FailedFilter(name="sleep"))
    assert sorted(by_name.retried) == sorted(other) and by_name.more is False

    first = dlq.retry_failed(core, "default", max_tasks=5)
    assert len(first.retried) == 5 and first.more is True
    rest = dlq.retry_failed(core, "default")
    assert len(rest.retried) == 2 and rest.more is False
    assert sorted(first.retried + rest.retried) == sorted(echo)
    assert core.store.list_tasks("default", TaskStatus.FAILED)[0] == []
    assert dlq.retry_failed(core, "other-tenant").retried == []
    done = pump_until_final(core, worker, echo)
    assert {(t.status, t.attempts) for t in done} == {(TaskStatus.SUCCEEDED, 1)}


def test_a_logical_queue_redrives_the_dlqs_of_all_its_priority_queues(core: Enqueuer) -> None:
    assert sorted(dlq.queue_keys(core, "default")) == ["default", "default:high", "default:low"]
    assert dlq.queue_keys(core, "nope") == []
