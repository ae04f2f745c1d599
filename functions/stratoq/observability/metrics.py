"""Metrics: the hooks the services call, recorded by whichever recorders a process has.

A process builds one `Metrics` in its composition root (`stratoq.services.app`) with the
recorders that fit where it runs: prometheus-client for pollers, the dev stack and
containers (`observability.prometheus`), CloudWatch EMF on Lambda (built at the Lambda
edge, `stratoq.handlers.emf`), none for a one-shot CLI command. Every recorder sees the
same metric names (`observability.specs`).

Queue depth and the age of the oldest message are not recorded by hooks: they are read
from SQS when /metrics is scraped (`observability.queue_gauges`). A hook never raises: a
bug in metrics must not fail a task. Metrics carry queue and task names only, never
payloads.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Concatenate, ParamSpec

from stratoq.observability.specs import (
    CANCELLED,
    ENQUEUED,
    FINISHED,
    HANDED_BACK,
    MESSAGES,
    ORPHANS,
    QUEUE_WAIT,
    RUN_SECONDS,
    STARTED,
    TIMED_OUT,
    UNKNOWN,
    MetricSpec,
)

if TYPE_CHECKING:
    from stratoq.core.models import Task

logger = logging.getLogger(__name__)


class Recorder:
    """Where metric values go (prometheus-client, EMF, a test's list). Every method is a
    no-op here; a recorder overrides what it records."""

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        """Add `value` to a counter."""

    def observe(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        """Record one value of a histogram."""

    def known(self, labels: dict[str, str]) -> None:
        """A (queue, task_name) pair exists: its series may be exported at zero."""

    def slots(self, busy: int, idle: int) -> None:
        """A worker process's slot gauges."""

    def heartbeat(self, at: float) -> None:
        """A worker process is alive (epoch seconds)."""

    def flush(self) -> None:
        """End of a unit of work (a Lambda invocation): emit what was collected."""


P = ParamSpec("P")


def _hook(fn: Callable[Concatenate[Metrics, P], None]) -> Callable[Concatenate[Metrics, P], None]:
    """Never let a metrics problem escape into the caller; warn once per hook."""

    def wrapper(self: Metrics, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(self, *args, **kwargs)
        except Exception as exc:
            if fn.__name__ not in self._warned:
                self._warned.add(fn.__name__)
                logger.warning(
                    "recording a metric failed",
                    extra={"hook": fn.__name__, "error_type": type(exc).__name__},
                )

    functools.update_wrapper(wrapper, fn)
    return wrapper


def queue_wait_seconds(task: Task) -> float | None:
    """Seconds between when a claimed attempt was due and its start (`started_at`).

    Due is the latest of enqueue time, run_at/delay and retry time. A manual retry of an
    old task (`POST .../retry`) counts from its first enqueue, as nothing newer is kept.
    """
    if task.started_at is None:
        return None
    due = max(d for d in (task.created_at, task.scheduled_for, task.next_attempt_at) if d)
    return max(0.0, (task.started_at - due).total_seconds())


def _labels(task: Task) -> dict[str, str]:
    return {"queue": task.queue, "task_name": task.name}


class Metrics:
    """The metric hooks of one process, fanned out to its recorders."""

    def __init__(self, recorders: Sequence[Recorder] = ()) -> None:
        self.recorders: tuple[Recorder, ...] = tuple(recorders)
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._slots_busy = 0
        self._slots_total = 0

    def _count(self, spec: MetricSpec, labels: dict[str, str], value: float = 1.0) -> None:
        for r in self.recorders:
            r.count(spec, labels, value)

    def _observe(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        for r in self.recorders:
            r.observe(spec, labels, value)

    @_hook
    def tasks_enqueued(self, tasks: Iterable[Task]) -> None:
        """Tasks whose messages were handed to SQS."""
        for (queue, name), n in Tally((t.queue, t.name) for t in tasks).items():
            self._count(ENQUEUED, {"queue": queue, "task_name": name}, n)

    @_hook
    def tasks_known(self, queues: Iterable[str], task_names: Iterable[str]) -> None:
        """Export every task counter and histogram of these pairs at 0 (at a worker's start).

        rate() and increase() only see what a series gains after its first scrape: a
        series born at 3 loses those 3. Counters that exist from the start lose nothing.
        """
        names = list(task_names)
        for queue in queues:
            for name in names:
                for r in self.recorders:
                    r.known({"queue": queue, "task_name": name})

    @_hook
    def task_started(self, task: Task, took_over: bool = False) -> None:
        """A claimed attempt begins. A take-over's wait would include the lost attempt."""
        labels = _labels(task)
        self._count(STARTED, labels)
        wait = None if took_over else queue_wait_seconds(task)
        if wait is not None:
            self._observe(QUEUE_WAIT, labels, wait)

    @_hook
    def task_ran(self, task: Task, seconds: float, outcome: str) -> None:
        """A handler call ended with `outcome` (policy.OutcomeKind value)."""
        if outcome == "lost":
            return  # aborted (lease lost, shutdown): not a run time
        labels = _labels(task)
        self._observe(RUN_SECONDS, labels, seconds)
        if outcome == "timeout":
            self._count(TIMED_OUT, labels)

    @_hook
    def task_finished(self, task: Task, status: str) -> None:
        """An attempt's outcome was recorded: succeeded, retrying or failed."""
        spec = FINISHED.get(status)
        if spec is not None:
            self._count(spec, _labels(task))

    @_hook
    def task_cancelled(self, task: Task) -> None:
        self._count(CANCELLED, _labels(task))

    @_hook
    def task_unknown(self, queue: str, task_name: str, outcome: str) -> None:
        """A worker met a task name it has no handler for: `handed_back` or `failed`."""
        self._count(UNKNOWN, {"queue": queue, "task_name": task_name, "outcome": outcome})

    @_hook
    def task_handed_back(self, queue: str, task_name: str, reason: str) -> None:
        """A task was handed back unclaimed and unspent to wait (`reason`: paused)."""
        labels = {"queue": queue, "task_name": task_name, "reason": reason}
        self._count(HANDED_BACK, labels)

    @_hook
    def message_orphaned(self, queue: str, task_name: str) -> None:
        """A message was dropped: its task was never stored (its enqueuer died first)."""
        self._count(ORPHANS, {"queue": queue, "task_name": task_name})

    @_hook
    def message_handled(self, queue: str, outcome: str) -> None:
        self._count(MESSAGES, {"queue": queue, "outcome": outcome or "unknown"})

    def _set_slots(self) -> None:
        busy, total = self._slots_busy, self._slots_total
        for r in self.recorders:
            r.slots(busy, max(0, total - busy))

    @_hook
    def slots_configured(self, total: int) -> None:
        """A poller with `total` slots starts (slots add up over pollers of one process)."""
        with self._lock:
            self._slots_total += total
            self._set_slots()

    @_hook
    def slot_taken(self) -> None:
        with self._lock:
            self._slots_busy += 1
            self._set_slots()

    @_hook
    def slot_released(self) -> None:
        with self._lock:
            self._slots_busy = max(0, self._slots_busy - 1)
            self._set_slots()

    @_hook
    def worker_heartbeat(self) -> None:
        now = time.time()
        for r in self.recorders:
            r.heartbeat(now)

    def flush(self) -> None:
        """Emit what recorders collected (Lambda: once per invocation); never raises."""
        for r in self.recorders:
            try:
                r.flush()
            except Exception as exc:
                logger.warning("flushing metrics failed", extra={"error_type": type(exc).__name__})
