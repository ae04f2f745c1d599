"""The chaos benchmark (loadtests/chaos.py) at its smallest: it runs and reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT


@pytest.mark.timeout(180)
def test_a_tiny_chaos_run_reports_faults_by_kind_and_meets_its_goals(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    args = ["--tasks", "50", "--fault-rate", "0.1", "--kill-every", "0.5", "--max-kills", "1"]
    done = subprocess.run(
        [PYTHON, "-m", "loadtests.chaos", *args, "--seed", "5", "--no-baseline", "--json", out],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| **tasks lost** (goal 0)" in done.stdout
    assert "| faults injected: lost" in done.stdout
    (run,) = json.loads(out.read_text())
    assert run["tasks"] == 50 and run["kills"] == 1
    assert sum(run["faults"].values()) > 0
    assert run["statuses"] == {"succeeded": 50}
    assert run["lost"] == run["applied_twice"] == run["not_final"] == []
    assert sum(run["requests"].values()) > 50
