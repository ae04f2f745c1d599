"""kill -9 in the middle of a chord's fan-in: a worker SIGKILLed after recording a
member, after the count that completes the callback's dependencies, or after marking
the callback started: the next worker finishes the job from the redelivered message,
and the callback runs exactly once, after every member."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stratoq.core.settings import Settings
from stratoq.core.workflows import WorkflowStatus, chord
from stratoq.services.app import Services
from stratoq.services.runner import InlineRunner
from tests.conftest import PYTHON, subprocess_env
from tests.support.procs import wait_for
from tests.support.pump import apply


@pytest.mark.parametrize("step", ["before_hook", "after_count", "after_start"])
def test_a_worker_killed_mid_fan_in_leaves_the_callback_to_run_once(
    settings: Settings, tmp_path: Path, step: str
) -> None:
    services = Services(settings)
    runs = tmp_path / "runs"
    wf = services.workflows.submit(
        chord([("echo", i) for i in range(5)], ("record", {"path": str(runs)})), "default"
    )
    dying = subprocess.run(
        [PYTHON, "-m", "tests.support.workflow_worker_dies", step],
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dying.returncode == -9, dying.stderr[-2000:]
    assert "DYING" in dying.stdout
    worker = services.worker(InlineRunner())

    def ended() -> bool:
        for d in services.transport.receive("default", 10, 1, 30):
            apply(services.enqueuer, d, worker.process(d))
        return services.workflows.get(wf.id, "default").status is not WorkflowStatus.RUNNING

    wait_for(ended, 60, "the workflow to end")
    got = services.workflows.get(wf.id, "default")
    assert got.status is WorkflowStatus.SUCCEEDED
    assert [n.status for n in got.nodes or []] == ["succeeded"] * 6
    starts = [ln for ln in runs.read_text().splitlines() if ln.startswith("start")]
    assert len(starts) == 1  # the callback ran once
    callback = services.store.get((got.nodes or [])[-1].task_id)
    assert callback is not None and callback.started_at is not None
    members_done = max(n.finished_at for n in (got.nodes or [])[:-1] if n.finished_at is not None)
    assert callback.started_at >= members_done  # not before its last member
