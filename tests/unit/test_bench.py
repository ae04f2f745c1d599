"""The benchmark's CPU accounting (loadtests/bench.py) reads what the kernel reports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from loadtests.bench import _cpu_seconds


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_process_cpu_time_matches_what_it_measures_itself() -> None:
    _burn(0.3)
    own = os.times()
    read = _cpu_seconds(pid=os.getpid())
    spent = own.user + own.system + own.children_user + own.children_system
    # /proc counts in clock ticks (10 ms); os.times() is read a moment earlier.
    assert abs(read - spent) < 0.05
    assert read >= 0.3


def test_a_session_counts_every_process_in_it() -> None:
    child = subprocess.Popen(  # a session of its own: a busy parent and a busy child
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', "
            "'import time\\ne = time.process_time() + 0.4\\n"
            "while time.process_time() < e: pass\\ntime.sleep(30)'])\n"
            "e = time.process_time() + 0.4\n"
            "while time.process_time() < e: pass\n"
            "time.sleep(30)",
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while _cpu_seconds(session=child.pid) < 0.75 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Each of the two spent 0.4 s (plus start-up); the leader alone counts one.
        session, leader = _cpu_seconds(session=child.pid), _cpu_seconds(pid=child.pid)
        assert session >= 0.75
        assert session - leader >= 0.3
    finally:
        os.killpg(child.pid, 9)
        child.wait()
