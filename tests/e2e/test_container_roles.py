"""The container image's roles without Docker: the entry point and health check as real
processes, and the Dockerfile's install line in a fresh venv (from PyPI, the one network
the project uses). `sam build` of the Lambda artifact: tests/e2e/test_lambda_artifact.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from stratoq.core.models import TaskRequest
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.conftest import PYTHON, ROOT, subprocess_env
from tests.support.artifacts import copy_source
from tests.support.install import UV
from tests.support.procs import wait_for


def python312() -> str | None:
    """A working python3.12 (the image's and the Lambda runtime's), if one is installed.

    A pyenv shim on PATH may name a version it will not run, so each candidate is tried.
    """
    candidates = [shutil.which("python3.12")]
    candidates += sorted(map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")))
    for candidate in filter(None, candidates):
        try:
            ok = subprocess.run([candidate, "--version"], capture_output=True, timeout=30)
        except OSError:
            continue
        if ok.returncode == 0 and ok.stdout.startswith(b"Python 3.12"):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return None


def messages_counted(text: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^stratoq_worker_messages_total\{[^}]*\} (\S+)$", text, re.M)
    )


def test_entrypoint_worker_serves_metrics_runs_tasks_and_drains(
    settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    port = free_port()
    env = subprocess_env(settings, STRATOQ_METRICS_PORT=str(port), STRATOQ_METRICS_HOST="127.0.0.1")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "infra/docker/entrypoint.py", "worker", "-c", "2", "--shutdown-grace", "10"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: scrape(port), 30, "the metrics endpoint")
        health = [PYTHON, "infra/docker/healthcheck.py"]
        assert subprocess.run(health, cwd=ROOT, env=env, check=False).returncode == 0
        ids = [
            r.task.id
            for r in core.enqueue_many([TaskRequest(name="echo", payload=i) for i in range(5)])
        ]

        def finished() -> bool:
            return all((t := core.store.get(i)) is not None and t.status.final for i in ids)

        wait_for(finished, 60, "5 tasks to finish")
        assert all(core.store.get(i).status.value == "succeeded" for i in ids)  # type: ignore[union-attr]
        # The poller counts in the entry point's process, which serves them.
        wait_for(lambda: messages_counted(scrape(port) or "") >= 5, 10, "5 messages counted")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(45) == 0, log.read_text()
        assert subprocess.run(health, cwd=ROOT, env=env, check=False).returncode == 1
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_entrypoint_serves_metrics_for_the_scheduler_role(
    settings: Settings, tmp_path: Path
) -> None:
    """`stratoq scheduler` has no metrics of its own: the entry point serves them."""
    port = free_port()
    env = subprocess_env(settings, STRATOQ_METRICS_PORT=str(port), STRATOQ_METRICS_HOST="127.0.0.1")
    log = tmp_path / "scheduler.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "infra/docker/entrypoint.py", "scheduler"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        text = wait_for(lambda: scrape(port), 30, "the metrics endpoint")
        assert "process_cpu_seconds_total" in text or "python_info" in text
        health = [PYTHON, "infra/docker/healthcheck.py"]
        assert subprocess.run(health, cwd=ROOT, env=env, check=False).returncode == 0
        # The endpoint comes up before the command: SIGTERM once the clock handles it.
        wait_for(lambda: "rule clock started" in log.read_text(), 30, "the rule clock")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def dockerfile_requirements() -> list[str]:
    """What the Dockerfile's build stage installs besides the project itself."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    [line] = [ln for ln in text.splitlines() if re.search(r"pip install \. ", ln)]
    words = shlex.split(line.split("pip install . ", 1)[1].split("&&", 1)[0])
    assert words, "the Dockerfile installs nothing but the project"
    return words


def test_dockerfile_install_line_gives_a_working_slim_runtime(
    settings: Settings, tmp_path: Path
) -> None:
    python = python312() or PYTHON  # the image's Python where available
    src = copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    # The image's requirements, installed by uv where make put it (a third of pip's time).
    if UV.exists():
        subprocess.run([python, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
        pip = [UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python"]
    else:
        subprocess.run([python, "-m", "venv", venv], check=True, timeout=120)
        pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    install = subprocess.run(
        [*pip, ".", *dockerfile_requirements()],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # Not the checkout: the venv's copy, as in the image (no PYTHONPATH, another cwd).
    env = {
        k: v
        for k, v in subprocess_env(settings).items()
        if k != "PYTHONPATH" and not k.startswith("STRATOQ_")
    }
    env |= {
        "STRATOQ_AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
        "STRATOQ_TEMPLATE": str(ROOT / "template.yaml"),
        "STRATOQ_METRICS_PORT": "0",
    }
    vpython = str(venv / "bin" / "python")
    where = subprocess.run(
        [vpython, "-c", "import stratoq, sys; print(stratoq.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv))
    entry = str(ROOT / "infra" / "docker" / "entrypoint.py")
    out = subprocess.run(
        [vpython, entry, "provision", "--stack", "image"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "export STRATOQ_TASKS_TABLE=image-tasks" in out.stdout.splitlines()
    # Slim: the emulator is not part of the image.
    moto = subprocess.run([vpython, "-c", "import moto"], capture_output=True, check=False)
    assert moto.returncode != 0
