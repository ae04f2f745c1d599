"""The Lambda worker handler, fed by the local event source mapping, as Lambda would."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from stratoq.adapters.store import Claimed
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.handlers.edge import entry
from stratoq.handlers.worker import WorkerFunction
from stratoq.local.esm import EventSourceMapping
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from tests.support.pump import queue_counts


@pytest.fixture
def esm(
    settings: Settings, core: Enqueuer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EventSourceMapping]:
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    # A cold start with this test's settings, read from the environment as on Lambda.
    handler = entry(WorkerFunction, Services.from_env)
    return EventSourceMapping(core.transport.client, core.transport, "default", handler)


def test_batch_with_partial_failure(core: Enqueuer, esm: EventSourceMapping) -> None:
    ids = [core.enqueue(TaskRequest(name="echo", payload=i)).task.id for i in range(3)]
    # Another worker holds the third task: its record must come back, the others not.
    held = core.store.claim(ids[2], "default", int(time.time() * 1000), 60_000)
    assert isinstance(held, Claimed)
    assert esm.poll_once() == 3
    tasks = [core.store.get(i) for i in ids]
    assert [t.status for t in tasks] == [
        TaskStatus.SUCCEEDED,
        TaskStatus.SUCCEEDED,
        TaskStatus.RUNNING,
    ]
    assert [t.result for t in tasks[:2]] == [0, 1]
    # The lease holder of a Lambda attempt is its invocation's request id.
    assert all(re.fullmatch(r"[0-9a-f-]{36}", t.holder or "") for t in tasks[:2])
    assert tasks[2].holder is None  # claimed above without a name
    # Only the failed record is left, hidden until the holder's lease would end.
    assert queue_counts(core) == {"visible": 0, "in_flight": 1, "delayed": 0}


def test_lambda_stops_a_cpu_bound_task_at_its_timeout(
    core: Enqueuer, esm: EventSourceMapping
) -> None:
    tid = core.enqueue(
        TaskRequest(name="cpu", payload={"seconds": 60}, timeout_seconds=1, max_attempts=2)
    ).task.id
    started = time.monotonic()
    assert esm.poll_once() == 1
    assert time.monotonic() - started < 3.0
    task = core.store.get(tid)
    assert task.status is TaskStatus.RETRYING
    assert task.errors[0].kind == "timeout"
    # The retry is a fresh delayed message; the original was acknowledged.
    assert queue_counts(core)["in_flight"] == 0


def test_retries_through_lambda_until_success(core: Enqueuer, esm: EventSourceMapping) -> None:
    tid = core.enqueue(
        TaskRequest(name="fail", payload={"times": 1}, backoff={"base_seconds": 1, "jitter": False})
    ).task.id
    deadline = time.monotonic() + 20
    while core.store.get(tid).status is not TaskStatus.SUCCEEDED:
        assert time.monotonic() < deadline, core.store.get(tid)
        esm.poll_once()
    task = core.store.get(tid)
    assert task.attempts == 2 and task.result == {"attempt": 2}
