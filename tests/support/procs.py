"""Start real stratoq processes for end-to-end tests and wait on observable conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from stratoq.core.settings import Settings
from tests.conftest import PYTHON, subprocess_env

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Proc:
    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill_hard(self) -> None:
        """SIGKILL the whole process group: the poller and its task processes."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def stratoq(
    settings: Settings, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Proc]:
    """Run `python -m stratoq ARGS` in its own process group; killed on exit."""
    log = tmp / f"stratoq-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [PYTHON, "-m", "stratoq", *args],
            env=subprocess_env(settings, **(env or {})),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc = Proc(popen, log)
    try:
        yield proc
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(10)
