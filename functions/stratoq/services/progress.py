"""One attempt's progress reports, throttled to about one store write a second.

`stratoq.context().progress(value, message)` calls `AttemptProgress.report`. The first
report is written at once; a report within a second of the last write is held back (a
newer one replaces it) and written when the second is over, by a timer, so the latest
report shows within about a second even if the handler goes quiet. When the handler
returns or raises, `close()` writes a report still held back, before the attempt's
outcome is recorded: the task keeps the attempt's last report (a failed attempt shows
how far it got). An attempt ended by a timeout or a kill loses at most its last second
of reports. Writes are fenced by the lease token (`ProgressStore.write`); a refused or
failed write is logged and never fails the task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from stratoq.adapters.progress import ProgressStore
from stratoq.core.clock import now_ms
from stratoq.core.policy import PROGRESS_INTERVAL_MS, progress_due
from stratoq.core.registry import TaskContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Report:
    value: float
    message: str | None
    at_ms: int


class AttemptProgress:
    """The progress reporter of one attempt (thread-safe: the timer writes too)."""

    def __init__(
        self, store: ProgressStore, ctx: TaskContext, clock: Callable[[], int] = now_ms
    ) -> None:
        self._store = store
        self._ctx = ctx
        self._clock = clock
        self._lock = threading.Lock()
        self._last_write_ms: int | None = None
        self._held: _Report | None = None
        self._timer: threading.Timer | None = None

    def report(self, value: float, message: str | None) -> None:
        """Write the report now if the throttle allows, else hold it back."""
        now = self._clock()
        with self._lock:
            self._held = _Report(value, message, now)
            if progress_due(self._last_write_ms, now):
                self._stop_timer()  # this write is the one it was due to make
                self._write_held(now)
            elif self._timer is None:
                left = (self._last_write_ms or now) + PROGRESS_INTERVAL_MS - now
                self._timer = threading.Timer(left / 1000, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """The attempt is over: write a report still held back, stop the timer."""
        with self._lock:
            self._stop_timer()
            if self._held is not None:
                self._write_held(self._clock())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._held is not None:
                self._write_held(self._clock())

    def _write_held(self, now: int) -> None:
        report, self._held = self._held, None
        if report is None:
            return
        self._last_write_ms = now
        ctx = self._ctx
        try:
            written = self._store.write(
                ctx.task_id,
                ctx.tenant,
                ctx.fencing_token,
                report.value,
                report.message,
                report.at_ms,
            )
        except Exception:
            logger.exception("progress report not written", extra={"task_id": ctx.task_id})
            return
        if not written:
            logger.info("progress report refused: lease lost", extra={"task_id": ctx.task_id})
