"""Concurrency and rate limits through real poller processes (issue 19, items 1 and 2):
4 pollers of 2 slots each never run more of a key's tasks at once than its limit, and
tasks sharing a rate limit start at that rate; each task runs once, no attempt spent
on waiting. Times are the tasks' own (CLOCK_MONOTONIC, one clock for every process)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.e2e.test_locks import intervals
from tests.support.procs import stratoq, wait_for


def final(core: Enqueuer, ids: list[str]) -> bool:
    return all((t := core.store.get(i)) is not None and t.status.final for i in ids)


def run_pollers(
    settings: Settings, core: Enqueuer, tmp: Path, requests: list[TaskRequest]
) -> list[str]:
    """Run the requests on 4 pollers of 2 slots; the ids, once every task succeeded once."""
    log = tmp / "intervals.log"
    with stratoq(settings, tmp, "worker", "--processes", "4", "-c", "2") as pool:
        # The pollers up first: a rate limit's tokens are promised at the enqueue, and a
        # task that finds no worker at its token's time starts late (up to LATE_MS).
        probe = core.enqueue(TaskRequest(name="echo")).task.id
        wait_for(lambda: final(core, [probe]), 60, "the pollers to start", every=0.5)
        ids = [r.task.id for r in core.enqueue_many(requests)]
        # The file first (cheap), then the store: reads would load the pollers' emulator.
        wait_for(lambda: len(intervals(log)) >= 2 * len(ids), 90, "the tasks to run", every=0.5)
        wait_for(lambda: final(core, ids), 30, "the tasks to be recorded", every=0.5)
        pool.signal(signal.SIGTERM)
        assert pool.wait(60) == 0, pool.output()[-3000:]
    tasks = [core.store.get(i) for i in ids]
    # Waiting for a slot or a token is not an attempt: every task ran once, first time.
    assert all(t is not None and t.status is TaskStatus.SUCCEEDED for t in tasks)
    assert all(t is not None and t.attempts == 1 and t.errors == [] for t in tasks)
    return ids


@pytest.mark.timeout(150)
def test_no_key_ever_runs_more_tasks_at_once_than_its_limit(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "intervals.log"
    keys = [f"customer-{k}" for k in range(4)]
    requests = [
        TaskRequest(
            name="interval",
            payload={"path": str(log), "sleep": 0.3},
            concurrency_key=keys[i % 4],
            max_concurrency=2,
        )
        for i in range(40)
    ]
    started = time.monotonic()
    ids = run_pollers(settings, core, tmp_path, requests)
    key_of = {tid: keys[i % 4] for i, tid in enumerate(ids)}
    peak = dict.fromkeys(keys, 0)
    running = dict.fromkeys(keys, 0)
    # Each task writes its start once it holds its slot and its end before freeing it.
    for kind, tid, _ in sorted(intervals(log), key=lambda row: (row[2], row[0] == "start")):
        running[key_of[tid]] += 1 if kind == "start" else -1
        peak[key_of[tid]] = max(peak[key_of[tid]], running[key_of[tid]])
    print(f"\n40 tasks, 4 keys of limit 2, 8 slots: {time.monotonic() - started:.1f} s, {peak}")
    assert peak == dict.fromkeys(keys, 2)


@pytest.mark.timeout(120)
def test_tasks_sharing_a_rate_limit_start_at_that_rate(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "intervals.log"
    request = TaskRequest(
        name="interval", payload={"path": str(log)}, rate_limit="10/s", rate_limit_key="api"
    )
    run_pollers(settings, core, tmp_path, [request] * 30)
    starts = sorted(ns / 1e9 for kind, _, ns in intervals(log) if kind == "start")
    span = starts[-1] - starts[0]

    def busiest(seconds: float) -> int:
        return max(sum(1 for s in starts if a <= s < a + seconds) for a in starts)

    print(f"\n30 tasks at 10/s: {span:.1f} s from first to last start, busiest s {busiest(1)}")
    # The 29 tokens after the first come 100 ms apart: 2.9 s, less the first task's own
    # start latency (a slot process starting it; a few hundred ms at most).
    assert 2.2 <= span <= 10
    # A token bucket lets at most its burst (a second's worth) plus the rate through in
    # any window: 20 in a second, 30 in two.
    assert busiest(1) <= 20 and busiest(2) <= 30
