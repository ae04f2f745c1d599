"""`stratoq dev --persist` restarted mid-run: the emulator's state survives, nothing is lost
and nothing is done twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.sdk.client import Client
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support.procs import wait_for
from tests.support.pump import counts_at

N_TASKS = 600


def _lines(log: Path, kind: str) -> Counter[str]:
    text = log.read_text() if log.exists() else ""
    return Counter(line.split()[1] for line in text.splitlines() if line.startswith(kind + " "))


def _final(client: Client, ids: list[str]) -> dict[str, Task] | None:
    listed = {t.id: t for t in client.iter_tasks(name="record")}
    if not all(i in listed and listed[i].status.final for i in ids):
        return None
    return {i: listed[i] for i in ids}


def _queued_anywhere(stack: DevStack) -> int:
    sqs = stack.sqs()
    urls = sqs.list_queues().get("QueueUrls", [])
    return sum(sum(counts_at(sqs, url).values()) for url in urls)


@pytest.mark.timeout(300)
def test_a_restarted_dev_stack_keeps_its_tasks_and_runs_each_once(tmp_path: Path) -> None:
    # Runs are logged outside the emulator: a restart from a stale state would run some
    # tasks again, and an emulator that lost its state would never run the rest.
    runs = tmp_path / "runs.log"
    first = start_dev(tmp_path, "--persist", "--workers", "4")
    try:
        client = Client(first.api_url, first.api_key)
        batch = [TaskRequest(name="record", payload={"path": str(runs), "sleep": 0.01})]
        ids = [t.id for t in client.enqueue_many(batch * N_TASKS)]
        wait_for(lambda: len(_lines(runs, "end")) >= 30, 60, "the first tasks to run")
    finally:
        assert stop_dev(first) == 0, first.log.read_text()[-3000:]
    ended_before = len(_lines(runs, "end"))
    assert 30 <= ended_before < N_TASKS  # the restart comes mid-run
    assert (tmp_path / "emulator.state").exists(), first.log.read_text()[-3000:]
    first.state_file.unlink()  # the new stack writes its own facts (new ports, new key)

    second = start_dev(tmp_path, "--persist", "--workers", "4")
    try:
        wait_for(
            lambda: "state:       restored from" in second.log.read_text(),
            30,
            "the stack to say it restored its state",
        )
        client = Client(second.api_url, second.api_key)
        # The listing, a page of 100 at a time, rather than 600 waits one task at a time.
        tasks = wait_for(lambda: _final(client, ids), 120, "every task to be final", every=1)
        wait_for(lambda: _queued_anywhere(second) == 0, 30, "every queue to be empty")
    finally:
        assert stop_dev(second) == 0, second.log.read_text()[-3000:]
    assert {t.status for t in tasks.values()} == {TaskStatus.SUCCEEDED}
    assert {t.attempts for t in tasks.values()} == {1}
    started, ended = _lines(runs, "start"), _lines(runs, "end")
    assert started == ended == Counter(dict.fromkeys(ids, 1))  # each task ran exactly once
    assert (tmp_path / "emulator.state").exists()  # saved again at the second stop
    assert not (tmp_path / "emulator.state.restored").exists()  # superseded by that save
