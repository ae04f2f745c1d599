"""SIGTERM and SIGINT that stop a process, whichever thread the kernel hands them to.

Two traps, both met here:

- Python runs a signal handler in the main thread between two bytecodes, possibly while
  that thread holds the very lock the handler needs: a poller that got SIGTERM from
  `kill` on its process group and again from its supervisor ran the second handler inside
  the first one's `Event.set()` and waited on that event's lock forever.
- The kernel may deliver a process-directed signal to any thread. When it lands on a
  thread other than the main one, Python only notes it, and its handler waits for the
  main thread to run bytecode again: a main thread blocked in `Event.wait()` never does.
  `stratoq dev` ignored about one SIGTERM (or Ctrl-C) in seven that way.

So the handler does nothing: the C-level handler writes the signal's number to a wakeup
pipe (`signal.set_wakeup_fd`) from whichever thread received it, and a daemon thread
reading that pipe calls `stop`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signals(stop: Callable[[], None]) -> None:
    """Call `stop` from a helper thread after each SIGTERM or SIGINT (main thread only).

    `stop` must be safe to call more than once and from any thread.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # the C handler must never block; a full pipe drops

    def handler(signum: int, frame: FrameType | None) -> None:
        """Replaces the default action (ending the process); the wakeup pipe does the work."""

    def watch() -> None:
        stops = {int(s) for s in STOP_SIGNALS}
        # Other signals with a Python handler (SIGALRM, ...) write their numbers too.
        while data := os.read(read_end, 64):
            if stops.intersection(data):
                stop()

    threading.Thread(target=watch, name="stratoq-signals", daemon=True).start()
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
