"""Chaos: pollers killed and frozen while they work. Nothing lost, nothing done twice."""

from __future__ import annotations

import os
import random
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from stratoq.adapters import aws
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.support.netcut import NetCut
from tests.support.procs import Proc, stratoq, wait_for
from tests.support.pump import queue_counts
from tests.support.tables import hash_table

FAST_LEASE = {"STRATOQ_LEASE_SECONDS": "3", "STRATOQ_METRICS_PORT": "0"}
N_TASKS = 2000


def effects_table(settings: Settings) -> str:
    return hash_table(aws.dynamodb(settings), "chaos-effects")


def scan_all(settings: Settings, table: str) -> list[dict[str, str]]:
    db = aws.dynamodb(settings)
    out: list[dict[str, str]] = []
    kwargs: dict[str, object] = {"TableName": table}
    while True:
        page = db.scan(**kwargs)
        out.extend({k: next(iter(v.values())) for k, v in i.items()} for i in page["Items"])
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.mark.timeout(420)
def test_2000_tasks_while_a_random_poller_is_killed_every_few_seconds(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    table = effects_table(settings)
    rng = random.Random(20261128)
    kills = 0
    with ExitStack() as stack:

        def start() -> Proc:
            return stack.enter_context(
                stratoq(settings, tmp_path, "worker", "-c", "4", env=FAST_LEASE)
            )

        procs = [start() for _ in range(4)]
        ids: list[str] = []
        for _ in range(0, N_TASKS, 100):
            batch = [TaskRequest(name="effect", payload={"table": table})] * 100
            ids.extend(r.task.id for r in core.enqueue_many(batch))
        deadline = time.monotonic() + 300
        next_kill = time.monotonic() + rng.uniform(2, 3)
        while True:
            counts = queue_counts(core)
            if counts["visible"] + counts["in_flight"] + counts["delayed"] == 0:
                break
            assert time.monotonic() < deadline, f"still running after 300 s: {counts}"
            if time.monotonic() >= next_kill:
                victim = rng.randrange(len(procs))
                procs[victim].kill_hard()  # SIGKILL: no goodbye, leases just lapse
                procs[victim] = start()
                kills += 1
                next_kill = time.monotonic() + rng.uniform(2, 3)
            time.sleep(0.5)
        # A poller restarted just before the end may still be starting: Python has not
        # installed its signal handlers yet, and SIGTERM would end it by default (-15).
        # Stop them once they run, so the exit code says how a running poller stops.
        wait_for(
            lambda: all("poller started" in p.output() for p in procs), 60, "the pollers to start"
        )
        for p in procs:
            p.signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(60) == 0
    assert kills >= 3
    tasks = {i: core.store.get(i) for i in ids}
    assert all(t is not None and t.status is TaskStatus.SUCCEEDED for t in tasks.values()), [
        (i, t.status if t else None) for i, t in tasks.items() if not t or not t.status.final
    ][:5]
    applied = {row["pk"]: row["token"] for row in scan_all(settings, table)}
    # Every task's effect was applied exactly once (one row per task, by conditional put),
    # and every recorded result names that one application.
    assert set(applied) == set(ids)
    assert all(tasks[i].result == applied[i] for i in ids)
    took_over = sum(1 for t in tasks.values() if any(e.kind == "lost" for e in t.errors))
    print(f"\nchaos: {kills} pollers killed, {took_over} tasks taken over after a lost lease")
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_a_frozen_worker_loses_its_lease_and_its_late_completion_is_refused(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    tid = core.enqueue(TaskRequest(name="record", payload={"path": str(log), "sleep": 5})).task.id
    with stratoq(settings, tmp_path, "worker", "-c", "1", env=FAST_LEASE) as frozen:
        wait_for(lambda: "start" in (log.read_text() if log.exists() else ""), 30, "a start")
        # SIGSTOP the whole poller (heartbeats included): as if its network went away.
        os.killpg(frozen.popen.pid, signal.SIGSTOP)
        try:
            with stratoq(settings, tmp_path, "worker", "-c", "1", env=FAST_LEASE) as other:
                task = wait_for(
                    lambda: t if (t := core.store.get(tid)) and t.status.final else None,
                    60,
                    "the other worker to finish the task",
                )
                other.signal(signal.SIGTERM)
                assert other.wait(30) == 0
        finally:
            os.killpg(frozen.popen.pid, signal.SIGCONT)
        # The frozen worker wakes up, finishes its copy and tries to record it.
        wait_for(lambda: log.read_text().count("end") == 2, 30, "the frozen attempt to end")
        frozen.signal(signal.SIGTERM)
        assert frozen.wait(30) == 0
    final = core.store.get(tid)
    assert final.status is TaskStatus.SUCCEEDED
    assert final.attempts == 2
    assert final.result["attempt"] == 2  # the late attempt 1 was not accepted
    assert final.errors[0].kind == "lost"
    assert task.result == final.result


def test_a_worker_that_loses_its_network_mid_task_is_taken_over_and_recovers(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    link = NetCut(settings.aws_endpoint_url or "")
    cut_off = {**FAST_LEASE, "STRATOQ_AWS_ENDPOINT_URL": link.url}
    tid = core.enqueue(TaskRequest(name="record", payload={"path": str(log), "sleep": 5})).task.id
    try:
        with stratoq(settings, tmp_path, "worker", "-c", "1", env=cut_off) as isolated:
            wait_for(lambda: "start" in (log.read_text() if log.exists() else ""), 30, "a start")
            link.cut()  # heartbeats, the completion and receives now fail: no lease renewal
            with stratoq(settings, tmp_path, "worker", "-c", "1", env=FAST_LEASE) as other:
                task = wait_for(
                    lambda: t if (t := core.store.get(tid)) and t.status.final else None,
                    60,
                    "the other worker to finish the task",
                )
                # The isolated attempt ended too, unrecorded: its AWS calls all failed.
                wait_for(lambda: log.read_text().count("end") == 2, 30, "both attempts to end")
                other.signal(signal.SIGTERM)
                assert other.wait(30) == 0
            link.restore()
            # The isolated worker outlived its failed calls: back online, it runs new work.
            later = core.enqueue(TaskRequest(name="record", payload={"path": str(log)})).task.id
            wait_for(
                lambda: (t := core.store.get(later)) and t.status is TaskStatus.SUCCEEDED,
                60,
                "the reconnected worker to run a new task",
            )
            isolated.signal(signal.SIGTERM)
            assert isolated.wait(30) == 0, isolated.output()[-3000:]
    finally:
        link.close()
    final = core.store.get(tid)
    assert final is not None and final.status is TaskStatus.SUCCEEDED
    assert final.attempts == 2
    assert final.result["attempt"] == 2  # the cut-off attempt 1 was never accepted
    assert final.errors[0].kind == "lost"
    assert task.result == final.result
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 0}
