"""The embedded stack for integration tests: `stratoq dev` in a child process.

A child process, not threads of the test process: the dev stack's emulator keeps its
state in moto's process-wide backends, which eager mode's `mock_aws` empties whenever
it starts, so the two could not share a process. The child runs in a session of its
own, so stopping it stops its pollers' slot processes too, and it dies with the
process that started it (Linux), so an interrupted test run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess  # nosec B404 - starts `stratoq dev` with this interpreter
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from stratoq.core.errors import StratoqError

# Long enough for a cold start on a busy machine (imports, template translation).
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


class StackError(StratoqError):
    """The embedded stack did not start."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it when the test process dies.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class DevProcess:
    """`stratoq dev` on free ports with its own state directory; `start()` returns the
    facts of its dev.json (api_url, api_key, aws_endpoint_url)."""

    def __init__(self, tasks: str, state_dir: Path, cwd: Path, workers: int = 2) -> None:
        self.tasks = tasks
        self.state_dir = state_dir
        self.cwd = cwd
        self.workers = workers
        self.state_file = state_dir / "dev.json"
        self.log_file = state_dir / "dev.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "stratoq",
            "dev",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--workers",
            str(self.workers),
            "--tasks",
            self.tasks,
            "--state-file",
            str(self.state_file),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> dict[str, str]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # The child imports what this process imports: the project's package and its
        # tasks module wherever pytest found them (rootdir, src/, installed).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = self.log_file.open("wb")
        # Our own interpreter and arguments, no shell.
        self.proc = subprocess.Popen(  # noqa: S603  # nosec B603
            self.command(),
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            return self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> dict[str, str]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(
                    f"`stratoq dev` exited with code {self.proc.returncode} before it was "
                    f"ready:\n{self._log_tail()}"
                )
            facts = self._facts()
            if facts and _answers(facts["api_url"] + "/health"):
                return facts
            # Waits on the process itself, so an early exit is seen at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(0.1)
        raise StackError(f"`stratoq dev` was not ready within {timeout:.0f} s:\n{self._log_tail()}")

    def _facts(self) -> dict[str, str] | None:
        # dev.json is written once the stack serves, after everything else started.
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not data.get("api_url") or not data.get("api_key"):
            return None
        return {k: str(v) for k, v in data.items()}

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        """Stop the stack (letting running tasks finish, as Ctrl-C does), then anything
        of its session still running."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(STOP_TIMEOUT)
            # Slot processes and the fork server share the stack's session and group.
            _end_group(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None


def _end_group(pgid: int, timeout: float = STOP_TIMEOUT) -> None:
    """Kill what is left of a process group and return once it is gone: a killed process
    lingers until its new parent reaps it, and the caller promises no leftovers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        # The stack's own loopback http:// URL, from the dev.json it wrote.
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310  # nosec B310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
