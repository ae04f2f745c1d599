"""Run one handler call with a hard timeout.

Two runners, one contract (`run(job, lost) -> Outcome`):
- `InlineRunner` runs the handler in the calling thread. In the main thread (Lambda) a
  SIGALRM timer interrupts it, busy CPU loops included; elsewhere a watchdog raises the
  timeout asynchronously in the thread (Python code only: a long C call finishes first).
  Setting `lost` (a cancelled task's `CancelWatch.stop`) interrupts it the same way.
- `ProcessRunner` (pollers) keeps a child process per slot and kills it when the time is
  up or the lease is lost, whatever the handler is doing, then starts a fresh one.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any, Protocol

from stratoq.adapters import aws
from stratoq.adapters import progress as progress_store
from stratoq.adapters.locks import LockStore, bound
from stratoq.adapters.progress import ProgressStore
from stratoq.core import registry
from stratoq.core.errors import Fail, InvalidPayloadError, Retry, TaskCancelled, TaskTimeout
from stratoq.core.policy import Outcome, OutcomeKind
from stratoq.core.registry import TaskContext
from stratoq.core.settings import Settings
from stratoq.observability import tracing
from stratoq.services.progress import AttemptProgress

logger = logging.getLogger(__name__)

# Pure-Python work is interruptible at once; give C calls a moment before the kill.
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Job:
    name: str
    payload: Any
    context: TaskContext
    # The run span's context (a W3C traceparent; None while not tracing): the handler
    # runs in it, here or in a slot's process, so the tasks it enqueues join the trace.
    trace: str | None = None

    @property
    def timeout(self) -> float:
        return float(self.context.timeout_seconds)


class Runner(Protocol):
    def run(self, job: Job, lost: threading.Event | None = None) -> Outcome: ...

    def close(self) -> None: ...


def execute(job: Job) -> Outcome:
    """Call the handler and map how it ended to an Outcome (no timeout here). Its
    progress reports go to the store bound in this process, if any; a report held
    back by the throttle is written before the outcome is returned."""
    store = progress_store.current()
    reporter = AttemptProgress(store, job.context) if store is not None else None
    try:
        with tracing.continued(job.trace):
            return _execute(job, reporter.report if reporter is not None else None)
    finally:
        if reporter is not None:
            reporter.close()


def _execute(job: Job, report: Any) -> Outcome:
    handler = registry.get(job.name)
    if handler is None:
        return unknown_task(job.name)
    try:
        # Apart from the handler's own errors: an InvalidPayloadError the handler raises
        # (a bad enqueue of another task, say) is its error, not this task's payload.
        argument = registry.argument(job.name, job.payload)
    except InvalidPayloadError as exc:
        return Outcome(OutcomeKind.INVALID_PAYLOAD, message=str(exc))
    children: list[Any] = []
    try:
        result = registry.run_handler(handler, argument, job.context, report, children)
    except Retry as exc:
        return Outcome(OutcomeKind.RETRY, message=exc.reason, retry_delay=exc.delay)
    except Fail as exc:
        return Outcome(OutcomeKind.FAIL, message=str(exc) or "failed by the handler")
    except TaskTimeout:
        return _timed_out(job)
    except TaskCancelled:
        return STOPPED
    except Exception as exc:
        return Outcome(OutcomeKind.ERROR, message=f"{type(exc).__name__}: {exc}")
    try:
        json.dumps(result)
    except (TypeError, ValueError) as exc:
        return Outcome(OutcomeKind.FAIL, message=f"result is not JSON-serialisable: {exc}")
    return Outcome(OutcomeKind.SUCCESS, result=result, children=tuple(children))


def unknown_task(name: str) -> Outcome:
    known = ", ".join(registry.names()) or "none"
    return Outcome(
        OutcomeKind.UNKNOWN_TASK,
        message=f"no handler registered for task {name!r} (registered: {known})",
    )


# A handler the worker stopped waiting for: its task was cancelled (services.leases).
STOPPED = Outcome(OutcomeKind.CANCELLED, message="stopped: the task was cancelled")


def _timed_out(job: Job) -> Outcome:
    return Outcome(OutcomeKind.TIMEOUT, message=f"timed out after {job.context.timeout_seconds} s")


class InlineRunner:
    """Runs handlers in the calling thread (the Lambda worker)."""

    def run(self, job: Job, lost: threading.Event | None = None) -> Outcome:
        if threading.current_thread() is threading.main_thread():
            return self._with_alarm(job, lost)
        return self._with_watchdog(job, lost)

    def close(self) -> None:
        pass

    @staticmethod
    def _with_alarm(job: Job, lost: threading.Event | None) -> Outcome:
        def on_alarm(signum: int, frame: FrameType | None) -> None:
            if lost is not None and lost.is_set():
                raise TaskCancelled()
            raise TaskTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        outer, _ = signal.setitimer(signal.ITIMER_REAL, job.timeout)
        started = time.monotonic()
        # A stop comes from another thread: only a signal interrupts the main thread.
        main = threading.get_ident()
        stopper = _Stopper(lost, lambda: signal.pthread_kill(main, signal.SIGALRM))
        try:
            return execute(job)
        except TaskTimeout:
            # The alarm fired after the handler returned but before the timer was cleared.
            return _timed_out(job)
        except TaskCancelled:
            return STOPPED
        finally:
            stopper.close()
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer > 0:
                # Someone else's alarm was pending (pytest-timeout's, around a test in
                # eager mode): give it back what is left of it, at once if it is due.
                left = outer - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))

    @staticmethod
    def _with_watchdog(job: Job, lost: threading.Event | None) -> Outcome:
        thread_id = threading.get_ident()

        def raise_in_handler(error: type[BaseException]) -> None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread_id), ctypes.py_object(error)
            )

        stopper = _Stopper(lost, lambda: raise_in_handler(TaskCancelled))
        timer = threading.Timer(
            job.timeout, stopper.interrupt, args=(raise_in_handler, TaskTimeout)
        )
        timer.daemon = True
        timer.start()
        try:
            outcome = execute(job)
            stopper.close()
            return outcome
        except TaskTimeout:
            return _timed_out(job)
        except TaskCancelled:
            return STOPPED
        finally:
            stopper.close()
            timer.cancel()


class _Stopper:
    """Interrupts an inline handler when `lost` is set, until closed. Interrupts (its
    own and the timeout's, through `interrupt`) are serialised with `close`, so none
    lands after the handler's call is over."""

    def __init__(self, lost: threading.Event | None, stop: Callable[[], None]) -> None:
        self._lost = lost
        self._stop = stop
        self._lock = threading.Lock()
        self._closed = False
        if lost is not None:
            threading.Thread(target=self._wait, name="stratoq-stop", daemon=True).start()

    def _wait(self) -> None:
        assert self._lost is not None
        while not self._closed:
            if self._lost.wait(_POLL_SECONDS):
                self.interrupt(lambda _: self._stop(), TaskCancelled)
                return

    def interrupt(
        self, how: Callable[[type[BaseException]], None], error: type[BaseException]
    ) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                how(error)

    def close(self) -> None:
        with self._lock:
            self._closed = True


def _child_main(conn: Connection, settings: Settings) -> None:
    # The parent owns shutdown: Ctrl-C in a terminal or SIGTERM to the process group
    # must not kill a task mid-way; the parent finishes or kills us itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Linux only: die with the parent. The parent is the fork server, which exits when
    # the poller that started it does (however it ends, -9 included).
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # This process's own composition: the handler's registry and the store that
    # `stratoq.lock()` takes locks through, built once from the parent's settings.
    registry.load(settings.tasks_module)
    db = aws.dynamodb(settings)  # one client: each costs a session and a model load
    lock_store = LockStore(db, settings.tasks_table)
    reports = ProgressStore(db, settings.tasks_table)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        with bound(lock_store), progress_store.bound(reports):
            outcome = execute(job)
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return


# Slots start from a fork server that has already imported the worker code and the tasks
# module: a slot restarted after a timeout or a kill is ready in milliseconds instead of a
# fresh interpreter's second of imports (which a poller with many slots pays per slot).
# The server is a clean single-threaded process, so forking it is safe where forking the
# poller (threads, open connections) would not be.
_forks = multiprocessing.get_context("forkserver")
_spawn = multiprocessing.get_context("spawn")
_contexts: list[Any] = [_forks]


def _preload(settings: Settings) -> None:
    # Read when the server first starts; an import error here is ignored by the server
    # and shows up in the slot, which imports the module again and reports it.
    modules = [m.strip() for m in settings.tasks_module.split(",") if m.strip()]
    _forks.set_forkserver_preload(["stratoq.services.forkserver", __name__, *modules])


def _launch(settings: Settings) -> tuple[Any, Connection]:
    """A started slot process and our end of its pipe."""
    while True:
        ctx = _contexts[0]
        if ctx is _forks:
            _preload(settings)
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=_child_main, args=(child, settings), daemon=True, name="stratoq-slot"
        )
        try:
            proc.start()
        except OSError as exc:
            parent.close()
            child.close()
            if ctx is not _forks:
                raise
            # The server's socket lives in the temp directory; a TMPDIR whose path is too
            # long for a Unix socket (108 bytes) makes it fail to start. Slots still work,
            # started the slow way.
            logger.warning(
                "cannot start the slot fork server; starting slots with spawn",
                extra={"reason": str(exc)},
            )
            _contexts[0] = _spawn
            continue
        child.close()
        return proc, parent


class ProcessSlot:
    """One child process that runs one handler call at a time."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._proc: Any = None
        self._conn: Connection | None = None
        self._start()

    def _start(self) -> None:
        self._proc, self._conn = _launch(self._settings)

    def _restart(self) -> None:
        self._kill()
        self._start()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            os.kill(self._proc.pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.join(5)
        if self._conn is not None:
            self._conn.close()

    def run(self, job: Job, lost: threading.Event | None = None) -> Outcome:
        assert self._conn is not None
        try:
            self._conn.send(job)
        except (BrokenPipeError, OSError):
            self._restart()  # the idle child died; a fresh one takes the job
            self._conn.send(job)
        deadline = time.monotonic() + job.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._restart()
                return _timed_out(job)
            if lost is not None and lost.is_set():
                self._restart()
                return Outcome(OutcomeKind.LOST, message="lease lost while running; stopped")
            if self._conn.poll(min(remaining, _POLL_SECONDS)):
                try:
                    outcome: Outcome = self._conn.recv()
                except (EOFError, OSError):
                    self._proc.join(1)
                    code = self._proc.exitcode
                    self._restart()
                    return Outcome(
                        OutcomeKind.ERROR,
                        message=f"the task's worker process died (exit code {code})",
                    )
                return outcome

    def close(self) -> None:
        self._kill()


class ProcessRunner:
    """A pool of process slots; `run` takes a free one (callers never exceed `size`)."""

    def __init__(self, size: int, settings: Settings) -> None:
        self._free: list[ProcessSlot] = [ProcessSlot(settings) for _ in range(size)]
        self._all = list(self._free)
        self._lock = threading.Lock()

    def run(self, job: Job, lost: threading.Event | None = None) -> Outcome:
        with self._lock:
            slot = self._free.pop()
        try:
            return slot.run(job, lost)
        finally:
            with self._lock:
                self._free.append(slot)

    def close(self) -> None:
        for slot in self._all:
            slot.close()
