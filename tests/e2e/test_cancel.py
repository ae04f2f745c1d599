"""Cancel on the dev stack, over HTTP, the SDK and the CLI: a running task on the
pollers (its slot process ended at the heartbeat), a running task on the Lambda path
(its handler sees `stratoq.context().cancelled`), and bulk cancel by filter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stratoq import Client
from stratoq.core.errors import Conflict
from stratoq.core.models import Task, TaskStatus
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support.procs import wait_for

# The heartbeat (pollers) and the cancel watch (Lambda) check every 5 s at most; the
# Lambda path takes a second check to stop waiting for a handler that does not stop.
STOPPED_WITHIN = 15


def cancel_when_running(client: Client, task_id: str) -> tuple[Task, float]:
    """Cancel the task once it runs: its final state and the seconds it took to end."""
    wait_for(lambda: client.get(task_id).status is TaskStatus.RUNNING, 60, "the task to run")
    asked = time.monotonic()
    requested = client.cancel(task_id)
    assert requested.status is TaskStatus.RUNNING and requested.cancel_requested_at is not None
    done = client.wait(task_id, timeout=STOPPED_WITHIN + 5)
    return done, time.monotonic() - asked


def assert_cancelled_once(task: Task) -> None:
    assert (task.status, task.attempts, task.result) == (TaskStatus.CANCELLED, 1, None)
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, "cancelled")]


def test_a_running_poller_task_is_stopped_and_ends_cancelled(client: Client) -> None:
    task = client.enqueue("sleep", {"seconds": 60}, max_attempts=3)
    done, took = cancel_when_running(client, task.id)
    assert took < STOPPED_WITHIN
    assert_cancelled_once(done)
    # Final: no retry follows, and it cannot be cancelled again.
    with pytest.raises(Conflict, match="cancelled"):
        client.cancel(task.id)


def test_bulk_cancel_by_filter(dev: DevStack, client: Client) -> None:
    tasks = client.enqueue_many(
        [{"name": "echo", "payload": i, "delay_seconds": 600} for i in range(20)]
    )
    later = client.enqueue("echo", "spared", delay_seconds=600)
    cutoff = later.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    out = dev.cli("cancel", "--name", "echo", "--status", "scheduled", "--created-before", cutoff)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cancelled 20 task(s); asked 0 running task(s) to stop"
    assert {client.get(t.id).status for t in tasks} == {TaskStatus.CANCELLED}
    assert client.get(later.id).status is TaskStatus.SCHEDULED
    assert client.cancel_many(name="echo", status="scheduled") == {
        "cancelled": 1,
        "requested": 0,
        "more": False,
    }
    # Bad filters: 400 (or 422 for a malformed value) naming the field.
    for body, field in [
        ({"status": "succeeded"}, "status"),
        ({}, "body"),
        ({"created_before": "soon"}, "created_before"),
        ({"queue": "no such queue!"}, "queue"),
    ]:
        status, answer = dev.request("POST", "/v1/tasks/cancel", body)
        assert status in (400, 422), answer
        assert [e["field"] for e in answer["errors"]] == [field], answer


def test_a_running_lambda_task_sees_the_flag_and_ends_cancelled(tmp_path: Path) -> None:
    stack = start_dev(tmp_path, "--workers", "0", "--lambda-workers", "1")
    try:
        client = Client(stack.api_url, stack.api_key)
        seen = tmp_path / "seen.log"
        task = client.enqueue("until_cancelled", {"seconds": 60, "path": str(seen)})
        done, took = cancel_when_running(client, task.id)
        assert took < STOPPED_WITHIN
        assert_cancelled_once(done)
        assert seen.read_text() == f"saw cancel {task.id}\n"
    finally:
        assert stop_dev(stack) == 0
