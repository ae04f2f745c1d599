"""docs/tutorial.md, followed as a reader follows it: every command and file of the page,
in order, in an empty directory, with the built wheel installed.

What stands in for the reader's machine, and what does not run (NOT_RUN says why):
- the session's `local_venv` (the wheel with its `local` extra, pytest and pip, in a fresh
  venv) is the virtualenv of step 1; commands run with its bin first on PATH;
- stratoq is not on a package index here: PIP_FIND_LINKS points at the wheel's directory,
  as the page's last paragraph tells a reader in the same position;
- `make run` runs until Ctrl-C: it starts in the background (on free ports, through the
  scaffold Makefile's RUN_ARGS), the next command waits for the stack, and the test ends
  it with SIGINT to its process group, as a terminal's Ctrl-C does;
- the SAM CLI is the checkout's (.venv/sam); `sam build` runs for arm64 as printed,
  `sam deploy` and the commands against the deployed stack need an AWS account.

A ```python block whose first line names a file is written to that file; any other runs
as a script in the current directory, and each `print(...)  # text` line must print text.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.docs import Block, blocks
from tests.support.install import user_env
from tests.support.procs import wait_for

pytestmark = pytest.mark.timeout(600)

TUTORIAL = ROOT / "docs" / "tutorial.md"
SAM_BIN = ROOT / ".venv" / "sam" / "bin"

# Command prefixes the test does not run, and why. Every other command runs as printed.
NOT_RUN = {
    "python3 -m venv .venv": "the session's local_venv is this venv",
    ". .venv/bin/activate": "the commands run with local_venv's bin first on PATH",
    "pip install 'stratoq[local]'": "local_venv has the wheel with its local extra",
    "sam deploy": "needs an AWS account",
    "export STRATOQ_API_KEY=$(stratoq keys bootstrap": "needs a stack deployed on AWS",
    "export STRATOQ_API_URL=https://": "the URL of a stack deployed on AWS",
}
# A block that starts with one of these is about the deployed stack: none of it runs.
NOT_RUN_BLOCKS = ("export STRATOQ_API_KEY=",)


def printed_comments(block: Block) -> list[str]:
    """What each `print(...)  # text` line of a Python block says it prints."""
    said = []
    for line in block.text.splitlines():
        if line.startswith("print(") and "  # " in line:
            said.append(line.split("  # ", 1)[1].strip())
    return said


class Reader:
    """The reader's shell: a current directory, an environment, a stack running or not."""

    def __init__(self, venv: Path, wheel: Path, home: Path) -> None:
        self.cwd = home
        self.env = user_env(venv) | {
            "PIP_FIND_LINKS": str(wheel.parent),
            # The reader's pip cache: the arm64 wheels `sam build` fetches, once a machine.
            "PIP_CACHE_DIR": str(Path.home() / ".cache" / "pip"),
            "RUN_ARGS": "--port 0 --metrics-port 0",
            "SAM_CLI_TELEMETRY": "0",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONUNBUFFERED": "1",
        }
        self.env["PATH"] = os.pathsep.join([self.env["PATH"], str(SAM_BIN)])
        self.stack: subprocess.Popen[bytes] | None = None
        self.stack_log = home / "make-run.log"
        self.ran: list[tuple[str, subprocess.CompletedProcess[str]]] = []
        # How long each step took (shown with -rP): the page quotes these times.
        self.timings: list[tuple[str, float]] = []

    def run(self, command: str, expected_exit: int, where: str) -> None:
        if command.startswith("cd "):
            self.cwd = (self.cwd / command.split(maxsplit=1)[1]).resolve()
            assert self.cwd.is_dir(), where
            return
        started = time.monotonic()
        if command == "make run":
            self.start_stack(where)
            self.timings.append((command, time.monotonic() - started))
            return
        out = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert out.returncode == expected_exit, (
            f"{where}: {command!r} exited {out.returncode}, not {expected_exit}:\n"
            f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
        self.ran.append((command, out))
        self.timings.append((command, time.monotonic() - started))

    def python(self, block: Block, where: str) -> None:
        if block.module_path:
            target = self.cwd / block.module_path
            assert target.parent.is_dir(), f"{where}: no directory for {block.module_path}"
            target.write_text(block.text)
            return
        out = subprocess.run(
            ["python", "-c", block.text],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, f"{where}: {out.stderr[-3000:]}"
        for said in printed_comments(block):
            assert said in out.stdout, f"{where}: printed {out.stdout!r}, not {said!r}"
        self.ran.append((f"python block at {where}", out))

    def start_stack(self, where: str) -> None:
        assert self.stack is None, f"{where}: a second make run"
        with self.stack_log.open("wb") as log:
            self.stack = subprocess.Popen(
                ["bash", "-c", "make run"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state = self.cwd / ".stratoq" / "dev.json"

        def ready() -> bool:
            assert self.stack is not None and self.stack.poll() is None, self.log()
            return state.exists()

        wait_for(ready, 120, "make run to write .stratoq/dev.json")

    def stop_stack(self) -> None:
        """Ctrl-C in the reader's terminal: SIGINT to the foreground process group."""
        if self.stack is None:
            return
        os.killpg(self.stack.pid, signal.SIGINT)
        try:
            self.stack.wait(60)
        finally:
            if self.stack.poll() is None:
                os.killpg(self.stack.pid, signal.SIGKILL)
                self.stack.wait(10)

    def log(self) -> str:
        return self.stack_log.read_text(errors="replace")[-3000:]

    def outputs(self, prefix: str) -> list[str]:
        return [out.stdout for command, out in self.ran if command.startswith(prefix)]


def follow(reader: Reader) -> None:
    for block in blocks(TUTORIAL):
        where = f"docs/tutorial.md:{block.line}"
        if block.lang == "python":
            reader.python(block, where)
            continue
        commands = list(block.commands())
        if commands and commands[0].text.startswith(NOT_RUN_BLOCKS):
            continue
        for cmd in commands:
            if cmd.text.startswith(tuple(NOT_RUN)):
                continue
            reader.run(cmd.text, cmd.expected_exit, f"docs/tutorial.md:{cmd.line}")


def test_the_tutorial_runs_as_printed(
    local_venv: Path, stratoq_wheel: Path, tmp_path: Path
) -> None:
    if not (SAM_BIN / "sam").is_file():
        pytest.skip("the SAM CLI is not installed (make test installs it in .venv/sam)")
    reader = Reader(local_venv, stratoq_wheel, tmp_path)
    try:
        follow(reader)
        project = tmp_path / "shop"
        # With the stack still up: what the page's commands do not show.
        answers = reader.outputs("stratoq enqueue shop.total")
        done = json.loads(answers[0])
        assert done["status"] == "succeeded", done
        assert done["result"] == {"order_id": "o-9", "total": "22.50"}
        assert done["max_attempts"] == 3  # the @task option, applied by the API
        receipt = json.loads(reader.outputs("stratoq enqueue shop.receipt")[0])
        assert (receipt["status"], receipt["attempts"]) == ("succeeded", 2)
        # The project's tasks replaced stratoq's examples; the CLI finds the stack from a
        # subdirectory (.stratoq/dev.json upward).
        reader.cwd = project / "tests"
        reader.run("stratoq enqueue echo", 3, "extra check")
        assert "no task named 'echo'" in reader.ran[-1][1].stderr
    finally:
        reader.stop_stack()
        for command, seconds in reader.timings:
            print(f"{seconds:6.1f} s  {command[:100]}")
    assert "stopping" in reader.log(), reader.log()
    # What the page says the commands printed.
    refused = [out for cmd, out in reader.ran if "'[]'" in cmd or '"lines": []' in cmd]
    assert refused and "payload.lines" in refused[0].stderr
    tests_runs = reader.outputs("make test")
    assert "4 passed" in tests_runs[0], tests_runs[0]
    assert "5 passed" in tests_runs[-1], tests_runs[-1]
    # sam build: every function has the project's code and tasks module, stratoq without
    # its dev packages, and wheels for arm64.
    build = project / ".aws-sam" / "build"
    assert "shop.tasks" in (build / "template.yaml").read_text()
    for function in ("ApiFunction", "WorkerFunction", "SchedulerFunction"):
        code = build / function
        assert (code / "shop" / "tasks.py").read_text() == (
            project / "shop" / "tasks.py"
        ).read_text()
        assert (code / "stratoq" / "handlers" / "worker.py").is_file(), function
        for absent in ("stratoq/local", "stratoq/project", "stratoq/testing", "moto", "bin"):
            assert not (code / absent).exists(), f"{function} ships {absent}"
        [core] = (code / "pydantic_core").glob("_pydantic_core.*.so")
        assert re.search(r"aarch64", core.name), core.name
