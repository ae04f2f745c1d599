"""A stop signal stops the process whichever of its threads the kernel delivers it to."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

# The main thread blocks in Event.wait() as `stratoq dev` does; then a helper thread gets
# SIGTERM itself (pthread_kill: thread-directed, as the kernel may choose for `kill`).
PROGRAM = textwrap.dedent(
    """
    import signal, sys, threading
    from stratoq.runtime.signals import on_stop_signals

    done = threading.Event()
    on_stop_signals(done.set)
    blocked = threading.Event()

    def other_thread():
        blocked.wait()
        signal.pthread_kill(threading.get_ident(), signal.SIG{name})

    threading.Thread(target=other_thread, daemon=True).start()
    blocked.set()
    done.wait()
    print("stopped", flush=True)
    """
)


def run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM.format(name=name)],
        env={"PYTHONPATH": str(ROOT / "functions")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_sigterm_received_by_another_thread_wakes_a_main_thread_blocked_in_wait() -> None:
    proc = run("TERM")
    assert (proc.returncode, proc.stdout) == (0, "stopped\n"), proc.stderr


def test_sigint_too() -> None:
    proc = run("INT")
    assert (proc.returncode, proc.stdout) == (0, "stopped\n"), proc.stderr
