"""Progress reports of a running task (issue 21, item 2), over HTTP (a gateway on a
loopback port, the real authorizer and keys), on both paths a handler runs on: inline
in the worker (Lambda) and in a slot process (pollers)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from stratoq.adapters.progress import ProgressStore
from stratoq.adapters.store import Claimed
from stratoq.core.clock import now_ms
from stratoq.core.models import TaskRequest
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner, ProcessRunner, Runner
from stratoq.services.worker import Worker
from tests.support.gateway import serve_api
from tests.support.procs import wait_for
from tests.support.pump import pump_until_final


@pytest.fixture
def read(settings: Settings) -> Iterator[Any]:
    """`read(task_id)`: the task as `GET /v1/tasks/{id}` answers it, over HTTP."""
    http = urllib3.PoolManager(timeout=10)
    with serve_api(settings) as served:

        def get(task_id: str) -> dict[str, Any]:
            resp = http.request(
                "GET", f"{served.url}/v1/tasks/{task_id}", headers={"x-api-key": served.key}
            )
            assert resp.status == 200, resp.data
            return dict(json.loads(resp.data))

        yield get


@pytest.fixture(params=["lambda", "poller"])
def runner(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Runner]:
    """The Lambda worker's inline runner, or a poller's process slot."""
    run: Runner = InlineRunner() if request.param == "lambda" else ProcessRunner(1, settings)
    try:
        yield run
    finally:
        run.close()


def test_the_task_shows_its_latest_progress_while_it_runs_and_the_last_at_the_end(
    core: Enqueuer, runner: Runner, read: Any, tmp_path: Path, settings: Settings
) -> None:
    gate = tmp_path / "gate"
    payload = {"gate": str(gate), "chatty": 200}
    task = core.enqueue(TaskRequest(name="progress", payload=payload), settings.operator_tenant)
    assert read(task.task.id)["progress"] is None
    worker = Worker(core.store, core.transport, runner)
    thread = threading.Thread(
        target=pump_until_final, args=(core, worker, [task.task.id]), daemon=True
    )
    thread.start()
    # 200 reports in a burst after the first: held back, the latest written within about
    # a second (by the throttle's timer, the handler being busy elsewhere).
    shown = wait_for(
        lambda: (p := read(task.task.id)["progress"]) and p["message"] == "step 199" and p,
        20,
        "the burst's last report",
    )
    assert shown["value"] == 0.5
    assert shown["at"].endswith("Z")
    gate.write_text("open")
    thread.join(30)
    final = read(task.task.id)
    assert final["status"] == "succeeded"
    # The report made just before returning is written before the outcome.
    assert (final["progress"]["value"], final["progress"]["message"]) == (1.0, "done")


def test_a_worker_whose_lease_was_taken_over_cannot_overwrite_the_new_holders_progress(
    core: Enqueuer, read: Any, settings: Settings
) -> None:
    tenant = settings.operator_tenant
    task = core.enqueue(TaskRequest(name="echo", payload=1), tenant).task
    now = now_ms()
    first = core.store.claim(task.id, tenant, now, 1)
    assert isinstance(first, Claimed)
    # The first lease lapses (1 ms) and another worker takes the task over.
    second = core.store.claim(task.id, tenant, now + 1000, 30_000)
    assert isinstance(second, Claimed)
    reports = ProgressStore(core.store.client, core.store.table)
    assert reports.write(task.id, tenant, second.token, 0.5, "new holder", now + 1100)
    assert not reports.write(task.id, tenant, first.token, 0.9, "stale", now + 1200)
    assert not reports.write(task.id, "globex", second.token, 0.9, "other tenant", now + 1300)
    shown = read(task.id)["progress"]
    assert (shown["value"], shown["message"]) == (0.5, "new holder")
