"""Locks through real poller processes: tasks sharing a lock_key never overlap."""

from __future__ import annotations

import signal
import time
from itertools import pairwise
from pathlib import Path

import pytest

from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.support.procs import stratoq, wait_for
from tests.support.pump import queue_counts

# Short leases: a waiting task's delay derives from the holder's remaining hold. Not
# shorter: a poller renews every lease/3, so a 3 s lease lapsed (a second attempt) when a
# loaded 2-core CI machine starved a poller for 2 s; 5 s leaves 3 s.
FAST_LEASE = {"STRATOQ_LEASE_SECONDS": "5"}


def intervals(path: Path) -> list[tuple[str, str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        kind, task_id, ns = line.split()
        out.append((kind, task_id, int(ns)))
    return out


def finished(core: Enqueuer, ids: list[str]) -> bool:
    return all((t := core.store.get(i)) is not None and t.status.final for i in ids)


@pytest.mark.timeout(120)
def test_50_tasks_with_one_lock_key_never_overlap_across_4_pollers(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "intervals.log"
    request = TaskRequest(
        name="interval", payload={"path": str(log), "sleep": 0.05}, lock_key="ledger"
    )
    started = time.monotonic()
    with stratoq(
        settings, tmp_path, "worker", "--processes", "4", "-c", "2", env=FAST_LEASE
    ) as pool:
        ids = [r.task.id for r in core.enqueue_many([request] * 50)]
        # Watch the file (cheap) rather than 50 reads a poll, which would load the
        # emulator the pollers are using; then confirm in the store.
        wait_for(lambda: len(intervals(log)) >= 100, 90, "50 locked tasks to run", every=0.5)
        wait_for(lambda: finished(core, ids), 30, "50 locked tasks to be recorded", every=0.5)
        pool.signal(signal.SIGTERM)
        assert pool.wait(60) == 0, pool.output()[-3000:]
        output = pool.output()
    elapsed = time.monotonic() - started

    tasks = [core.store.get(i) for i in ids]
    assert all(t is not None and t.status is TaskStatus.SUCCEEDED for t in tasks)
    # Waiting for the lock is not an attempt: each task ran exactly once, first time.
    again = [(t.id, t.attempts, t.errors) for t in tasks if t and (t.attempts, t.errors) != (1, [])]
    lease_lines = [ln for ln in output.splitlines() if "lock" in ln or "lease" in ln]
    assert again == [], "\n".join([str(again), *lease_lines[-20:]])

    rows = intervals(log)
    # O_APPEND writes land in the order they were made, and each task writes its start
    # after taking the lock and its end before giving it back: with mutual exclusion the
    # file strictly alternates start/end of one task.
    kinds = [kind for kind, _, _ in rows]
    if kinds != ["start", "end"] * 50:
        first = next(i for i, k in enumerate(kinds) if k != ("start", "end")[i % 2])
        warnings = [line for line in output.splitlines() if "lock" in line or "lease" in line]
        pytest.fail(
            f"intervals overlap at row {first}: {rows[max(0, first - 3) : first + 3]}\n"
            + "\n".join(warnings[-20:])
        )
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    assert all(s[1] == e[1] for s, e in pairs)
    assert sorted(s[1] for s, _ in pairs) == sorted(ids)
    # The same on the clock: each interval ends before the next one starts.
    spans = sorted((s[2], e[2]) for s, e in pairs)
    assert all(end < nxt for (_, end), (nxt, _) in pairwise(spans))
    busy = (spans[-1][1] - spans[0][0]) / 1e9
    print(f"\n50 lock_key tasks on 4 pollers in {elapsed:.1f} s ({busy:.1f} s from first start)")
    wait_for(lambda: queue_counts(core)["in_flight"] == 0, 10, "acks to land")
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 0}


@pytest.mark.timeout(120)
def test_handler_lock_in_poller_child_processes(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    """stratoq.lock() inside handlers run in a poller's spawned slot processes."""
    log = tmp_path / "guarded.log"
    payload = {"path": str(log), "lock": "shared", "sleep": 0.2, "wait": 30}
    with stratoq(settings, tmp_path, "worker", "-c", "3", env=FAST_LEASE) as poller:
        ids = [
            r.task.id for r in core.enqueue_many([TaskRequest(name="guarded", payload=payload)] * 6)
        ]
        wait_for(lambda: finished(core, ids), 60, "6 guarded tasks to finish", every=0.5)
        poller.signal(signal.SIGTERM)
        assert poller.wait(60) == 0, poller.output()[-3000:]
    tasks = [core.store.get(i) for i in ids]
    assert all(t is not None and t.status is TaskStatus.SUCCEEDED for t in tasks)
    lines = log.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["start", "end"] * 6
    tokens = [int(ln.split()[2]) for ln in lines[::2]]
    assert tokens == sorted(set(tokens))  # each holder's fencing token beats the last
