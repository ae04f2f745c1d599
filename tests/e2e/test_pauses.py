"""A paused queue with a real `stratoq worker` process, paused and resumed with the CLI:
nothing starts while paused, over several rounds of hand-backs; everything runs once
after the resume (issue 19, item 4)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.conftest import PYTHON, subprocess_env
from tests.support.gateway import serve_api
from tests.support.procs import stratoq, wait_for

HANDED_BACK = "task handed back to wait"


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[str, str]]:
    """The HTTP API on a loopback port, and the operator's admin key."""
    with serve_api(settings) as served:
        yield served.url, served.key


def cli(settings: Settings, api: tuple[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    url, key = api
    return subprocess.run(
        [PYTHON, "-m", "stratoq", "--api-url", url, "--api-key", key, *args],
        env=subprocess_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_paused_queue_starts_nothing_until_resumed(
    settings: Settings, core: Enqueuer, tmp_path: Path, api: tuple[str, str]
) -> None:
    out = cli(settings, api, "queues", "pause", "default")
    assert (out.returncode, out.stdout) == (0, "queue default: paused\n"), out.stderr
    env = {"STRATOQ_PAUSE_CACHE_SECONDS": "1"}
    with stratoq(settings, tmp_path, "worker", "--concurrency", "2", env=env) as poller:
        ids = [
            r.task.id
            for r in core.enqueue_many([TaskRequest(name="echo", payload=i) for i in range(5)])
        ]
        # Every task handed back at least three times: several receive rounds each.
        wait_for(
            lambda: poller.output().count(HANDED_BACK) >= 3 * len(ids),
            60,
            "each task to be handed back three times",
        )
        tasks = [core.store.get(i) for i in ids]
        assert {(t.status, t.attempts) for t in tasks if t} == {(TaskStatus.QUEUED, 0)}
        assert "task succeeded" not in poller.output()
        shown = cli(settings, api, "queues", "paused")
        assert shown.stdout == "paused queues: default\npaused task names: none\n"

        out = cli(settings, api, "queues", "resume", "default")
        assert (out.returncode, out.stdout) == (0, "queue default: running\n"), out.stderr

        def finished() -> list[Task] | None:
            done = [core.store.get(i) for i in ids]
            final = [t for t in done if t is not None and t.status.final]
            return final if len(final) == len(ids) else None

        done = wait_for(finished, 60, "the tasks to run after the resume")
    assert sorted((t.status, t.attempts, t.result) for t in done) == [
        (TaskStatus.SUCCEEDED, 1, i) for i in range(5)
    ]


def test_the_cli_refuses_what_the_api_refuses(settings: Settings, api: tuple[str, str]) -> None:
    out = cli(settings, api, "queues", "pause", "nope")
    assert out.returncode == 1 and "no queue 'nope'" in out.stderr
    out = cli(settings, api, "queues", "resume", "--task-name", "billing.charge")
    assert (out.returncode, out.stdout) == (
        0,
        "task name billing.charge: running (it already was running)\n",
    )
    out = cli(settings, api, "queues", "pause", "default", "--task-name", "x")
    assert out.returncode == 2 and "either a queue or a --task-name" in out.stderr
