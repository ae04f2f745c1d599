"""Every command and Python snippet of README.md and docs/*.md runs as printed (issue 25).

One `stratoq dev` with the default tasks module (`stratoq.examples`) serves every
document. Commands run in order, each with bash in a project directory holding the
stack's `.stratoq/dev.json`, with a `stratoq` on PATH made like the installed console
script (the current directory is not importable through it), in a shell set up for the
stack's data plane (what `eval "$(stratoq ... provision)"` exports, which the README
does before its extra pollers). The conventions the documents follow are in
tests/support/docs.py; besides them:

- The stack runs on free ports: 8080 (the API), 9464 (its metrics) and 9465 (an extra
  poller's metrics) in a command are its ports; a worker's default metrics port too.
- A command that runs until stopped (`stratoq worker`, live `stratoq top`, ...) starts
  once nothing is left to run (a poller for another tasks module must not meet the
  docs' tasks), runs until its first output, and exits 0 on Ctrl-C (SIGINT). Pollers
  long-poll 1 s (STRATOQ_POLL_WAIT_SECONDS), so that they stop at once.
- A command with `--wait` that exits 0 printed a succeeded task; a curl command printed
  no API error (`{"message": ...}`).
- After each document every task is finished, and none failed unless a command marked
  `# exit 1` printed it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON, ROOT
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support.docs import Block, Command, Placeholders, blocks, console_script
from tests.support.procs import wait_for

# docs/tutorial.md runs in tests/e2e/test_tutorial.py: in a project of its own, with its
# own tasks module, from an empty directory (this stack runs stratoq's examples).
DOCS = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "tutorial.md"),
]
UNFINISHED = ("queued", "running", "retrying")
SHELL_STATE = {"_", "SHLVL", "PWD", "OLDPWD"}
# Kept over what a command exports: a poller stopped with Ctrl-C first finishes its long
# poll (20 s / 3 queues by default), which only makes this test slower.
FAST = {"STRATOQ_POLL_WAIT_SECONDS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Session:
    """The stack, the reader's project directory and shell, and what the docs allow."""

    stack: DevStack
    tmp: Path
    work: Path
    base_env: dict[str, str]
    ports: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)  # the current document's shell
    allowed_failed: set[str] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)
    runs: int = 0

    def localize(self, command: str) -> str:
        return re.sub(r"(?<![\w.])(8080|9464|9465)(?!\d)", lambda m: self.ports[m[1]], command)

    def tasks(self, status: str, limit: int = 100) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            path = f"/v1/tasks?status={status}&limit={limit}" + (
                f"&next_token={token}" if token else ""
            )
            code, page = self.stack.request("GET", path)
            assert code == 200, page
            found += page["tasks"]
            token = page.get("next_token") or ""
            if not token or limit == 1:
                return found

    def drain(self) -> None:
        wait_for(
            lambda: not any(self.tasks(s, limit=1) for s in UNFINISHED),
            120,
            "every task the docs enqueued to finish",
            every=0.25,
        )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("docs")
    metrics = free_port()
    # After the fixture's own --tasks and --metrics-port, so these win (argparse).
    stack = start_dev(tmp, "--tasks", "stratoq.examples", "--metrics-port", str(metrics))
    try:
        work = tmp / "project"
        (work / ".stratoq").mkdir(parents=True)
        shutil.copy(stack.state_file, work / ".stratoq" / "dev.json")
        bindir = tmp / "bin"
        script = console_script(bindir)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATOQ_", "AWS_"))}
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONPATH"] = str(ROOT / "functions")  # stratoq as if installed
        env["PYTHONUNBUFFERED"] = "1"
        provision = subprocess.run(
            [str(script), "--aws-endpoint-url", stack.aws_endpoint_url, "provision"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        for line in provision.stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
        env["STRATOQ_METRICS_PORT"] = str(free_port())
        env.update(FAST)
        api_port = stack.api_url.rsplit(":", 1)[1].split("/")[0]
        ports = {"8080": api_port, "9464": str(metrics), "9465": str(free_port())}
        yield Session(stack, tmp, work, env, ports)
    finally:
        code = stop_dev(stack)
        assert code == 0, stack.log.read_text()[-3000:]


def tail(text: str, lines: int = 15) -> str:
    return "\n".join("    " + x for x in text.strip().splitlines()[-lines:])


def api_error(command: str, stdout: str) -> str | None:
    if not command.lstrip().startswith("curl"):
        return None
    try:
        body = json.loads(stdout)
    except ValueError:
        return None
    if isinstance(body, dict) and "message" in body and "id" not in body:
        return str(body["message"])
    return None


def run_command(s: Session, cmd: Command, held: Placeholders, where: str) -> list[str]:
    if why := cmd.refusal():
        return [f"{where}: `{cmd.text}` not run: {why}; mark its block docs-test: skip (why)"]
    try:
        text = s.localize(held.fill(cmd.text))
    except AssertionError as exc:
        return [f"{where}: {exc}"]
    if cmd.runs_until_stopped:
        return run_until_stopped(s, cmd, text, where)
    envfile = s.tmp / "env"
    envfile.unlink(missing_ok=True)
    # -a: a VAR=... of one command reaches the next (KEY=$(...), then curl ... $KEY).
    script = f"set -a -e -o pipefail\ntrap 'env -0 > {shlex.quote(str(envfile))}' EXIT\n{text}\n"
    proc = subprocess.run(
        ["bash", "-c", script],
        cwd=s.work,
        env=s.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    ids = held.saw(proc.stdout + proc.stderr)
    if envfile.exists():
        for entry in envfile.read_text().split("\0"):
            key, sep, value = entry.partition("=")
            if sep and key not in SHELL_STATE:
                s.env[key] = value
        s.env.update(FAST)
    if cmd.expected_exit:
        s.allowed_failed.update(ids)
    said = f"{where}: `{cmd.text}`"
    if proc.returncode != cmd.expected_exit:
        output = tail(proc.stdout + proc.stderr)
        return [f"{said} exited {proc.returncode}, not {cmd.expected_exit}:\n{output}"]
    if error := api_error(text, proc.stdout):
        return [f"{said}: the API answered an error: {error}"]
    if "--wait" in text and proc.returncode == 0:
        try:
            status = json.loads(proc.stdout).get("status")
        except ValueError:
            status = "(no task printed)"
        if status != "succeeded":
            return [f"{said}: the task ended {status}, not succeeded"]
    return []


def run_until_stopped(s: Session, cmd: Command, text: str, where: str) -> list[str]:
    s.drain()
    s.runs += 1
    log = s.tmp / f"until-stopped-{s.runs}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", text],
            cwd=s.work,
            env=s.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    said = f"{where}: `{cmd.text}`"
    try:
        wait_for(lambda: proc.poll() is not None or log.stat().st_size > 0, 60, f"output of {said}")
        # A command that fails at start may print its sentence just before it exits.
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1.0)
        if proc.poll() is not None:
            return [f"{said} exited {proc.returncode} by itself:\n{tail(log.read_text())}"]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        code = proc.wait(90)
        if code != cmd.expected_exit:
            return [f"{said} exited {code} after Ctrl-C:\n{tail(log.read_text())}"]
        return []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def run_python(s: Session, block: Block, where: str) -> list[str]:
    if block.module_path:
        target = s.work / block.module_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text + "\n")
        module = block.module_path.removesuffix(".py").replace("/", ".")
        argv, stdin = [PYTHON, "-c", f"import {module}"], None
    else:
        argv, stdin = [PYTHON, "-"], block.text
    proc = subprocess.run(
        argv,
        input=stdin,
        cwd=s.work,
        env=s.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if proc.returncode != 0:
        return [f"{where}: the Python block exited {proc.returncode}:\n{tail(proc.stderr)}"]
    return []


def unexpected_failures(s: Session) -> list[str]:
    s.drain()
    problems = []
    for task in s.tasks("failed"):
        if task["id"] in s.allowed_failed or task["id"] in s.reported:
            continue
        s.reported.add(task["id"])
        last = task["errors"][-1] if task["errors"] else {}
        problems.append(
            f"task {task['name']} {json.dumps(task['payload'])} ({task['id']}) failed: "
            f"{last.get('kind')}: {last.get('message')}"
        )
    return problems


def run_document(s: Session, doc: Path) -> list[str]:
    """Every block of one document in order, in a fresh shell; its problems."""
    s.env = dict(s.base_env)
    held = Placeholders()
    problems: list[str] = []
    name = doc.relative_to(ROOT)
    for block in blocks(doc):
        if block.skipped:
            continue
        if block.lang == "python":
            problems += run_python(s, block, f"{name}:{block.line}")
            continue
        for cmd in block.commands():
            problems += run_command(s, cmd, held, f"{name}:{cmd.line}")
    return problems + unexpected_failures(s)


@pytest.mark.timeout(600)  # about a minute alone; the docs' commands wait on real tasks
def test_every_document_runs_as_printed(session: Session) -> None:
    # One test, not one per document: under xdist each would start a stack of its own.
    problems: list[str] = []
    for doc in DOCS:
        problems += run_document(session, doc)
    assert not problems, "\n".join(problems)
