"""The worker Lambda emits the task metrics as EMF, once per invocation, as on AWS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stratoq.adapters import aws
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.handlers import worker as lambda_worker
from stratoq.local.esm import EventSourceMapping
from stratoq.observability import metrics
from stratoq.services.enqueue import Enqueuer

MARKER = "emf-payload-marker"


@pytest.fixture
def esm(
    settings: Settings, core: Enqueuer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EventSourceMapping]:
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    lambda_worker._State.worker = None
    metrics.configure(prometheus=False, emf=True)  # as on Lambda
    try:
        yield EventSourceMapping(
            aws.sqs(core.settings), core.transport, "default", lambda_worker.lambda_handler
        )
    finally:
        metrics.configure()
        lambda_worker._State.worker = None


def emf_documents(out: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [d for d in docs if "_aws" in d]


def totals(docs: list[dict[str, Any]], name: str, key: str = "task_name") -> dict[str, float]:
    found: dict[str, float] = {}
    for d in docs:
        if name in d:
            found[d[key]] = found.get(d[key], 0.0) + sum(d[name])
    return found


def test_worker_lambda_emits_emf_per_invocation(
    core: Enqueuer, esm: EventSourceMapping, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = [core.enqueue(TaskRequest(name="echo", payload=MARKER)).task.id for _ in range(3)]
    ids.append(
        core.enqueue(
            TaskRequest(name="fail", payload={"times": 1}, backoff={"base_seconds": 0})
        ).task.id
    )
    capsys.readouterr()
    invocations = 0
    deadline = time.monotonic() + 30
    while not all(core.store.get(i).status is TaskStatus.SUCCEEDED for i in ids):
        assert time.monotonic() < deadline, [core.store.get(i) for i in ids]
        invocations += 1 if esm.poll_once() else 0
    docs = emf_documents(capsys.readouterr().out)
    assert totals(docs, "stratoq_tasks_succeeded_total") == {"echo": 3.0, "fail": 1.0}
    assert totals(docs, "stratoq_tasks_retried_total") == {"fail": 1.0}
    assert totals(docs, "stratoq_tasks_started_total") == {"echo": 3.0, "fail": 2.0}
    # The enqueues happened before the first invocation and went out with its flush.
    assert totals(docs, "stratoq_tasks_enqueued_total") == {"echo": 3.0, "fail": 1.0}
    runs = [v for d in docs for v in d.get("stratoq_task_run_seconds", [])]
    assert len(runs) == 5 and all(v >= 0 for v in runs)
    outcomes = totals(docs, "stratoq_worker_messages_total", key="outcome")
    assert outcomes == {"succeeded": 4.0, "retrying": 1.0}
    assert invocations >= 2  # the retry came in a later invocation, with its own flush
    for d in docs:
        [directive] = d["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "stratoq"
        assert "service" not in d
    assert MARKER not in json.dumps(docs)
