"""The enqueue gap (issue 23): an enqueuer killed between sending a task's message and
storing the task, or after storing it, leaves no task queued without a message, runs
every task whose enqueue returned exactly once, and never runs an orphan message."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stratoq.core.models import TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.conftest import PYTHON, subprocess_env
from tests.support.procs import stratoq, wait_for
from tests.support.pump import queue_counts

GRACE = {"STRATOQ_ORPHAN_GRACE_SECONDS": "3", "STRATOQ_METRICS_PORT": "0"}


def test_an_enqueuer_killed_at_either_step_leaves_nothing_queued_and_nothing_twice(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    env = subprocess_env(settings)
    cases = [
        (mode, kind)
        for mode in ("before_store", "after_store")
        for kind in ("one", "keyed", "batch")
    ]
    # Killed at the 2nd of 3 enqueues each: all six at once, to keep the test short.
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "tests.support.enqueue_and_die", mode, str(runs), "2", "3", kind],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for mode, kind in cases
    ]
    returned: list[str] = []
    unstored: list[str] = []  # sent, then killed before the write: orphan messages
    stored_unanswered: list[str] = []
    for (mode, kind), proc in zip(cases, procs, strict=True):
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 137, (mode, kind, out)
        lines = [line.split() for line in out.splitlines()]
        enqueued = [tid for word, tid in lines if word == "ENQUEUED"]
        dying = [tid for word, tid in lines if word == "DYING"]
        per_call = 3 if kind == "batch" else 1
        assert (len(enqueued), len(dying)) == (per_call, per_call), (mode, kind, out)
        returned += enqueued
        (unstored if mode == "before_store" else stored_unanswered).extend(dying)
    for tid in unstored:
        assert core.store.get(tid) is None
    with stratoq(settings, tmp_path, "worker", "-c", "4", env=GRACE):
        stored = returned + stored_unanswered

        def settled() -> bool:
            tasks = [core.store.get(tid) for tid in stored]
            counts = queue_counts(core)
            return all(t is not None and t.status is TaskStatus.SUCCEEDED for t in tasks) and (
                counts["visible"] + counts["in_flight"] + counts["delayed"] == 0
            )

        # The orphans' messages are handed back until the 3 s grace ends, then dropped.
        wait_for(settled, 60, "every stored task to succeed and the queue to drain")
    starts = [line.split()[1] for line in runs.read_text().splitlines() if line.startswith("start")]
    assert sorted(starts) == sorted(stored)  # each stored task once, no orphan at all
    for tid in unstored:
        assert core.store.get(tid) is None  # an orphan message never creates a task
    queued, _ = core.store.list_tasks("default", TaskStatus.QUEUED)
    assert queued == []
