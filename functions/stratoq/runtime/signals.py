"""SIGTERM and SIGINT that stop a process without taking a lock in the signal handler.

Python runs a signal handler in the main thread between two bytecodes, possibly while
that thread holds the very lock the handler needs: a poller that got SIGTERM from
`kill` on its process group and again from its supervisor ran the second handler inside
the first one's `Event.set()` and waited on that event's lock forever. Here the handler
only writes a byte to a pipe (no lock); a daemon thread reads it and calls `stop`.
"""

from __future__ import annotations

import contextlib
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
    os.set_blocking(write_end, False)

    def handler(signum: int, frame: FrameType | None) -> None:
        # A full pipe means stops are already pending: this one adds nothing.
        with contextlib.suppress(BlockingIOError):
            os.write(write_end, b"\0")

    def watch() -> None:
        while os.read(read_end, 1):
            stop()

    threading.Thread(target=watch, name="stratoq-signals", daemon=True).start()
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
