"""`Worker.process(delivery)`: the one code path every worker runs for every message.

paused queue or task name: hand the message back unclaimed, no attempt spent ->
concurrency and rate limits (`services.flow`: wait unclaimed, or hold slots) ->
claim (conditional write, new fencing token) -> take the task's lock if it has a
`lock_key` (held: undo the claim and re-delay, no attempt counted) -> run the handler
with a hard timeout -> record success | schedule a retry | fail, each write fenced by
the lease token -> release the lock. The
Lambda handler and the container poller differ only in the loop around this and in
what they do with the returned Disposition.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace

from stratoq.adapters.limits import Slot
from stratoq.adapters.locks import Acquired, LockStore, bound
from stratoq.adapters.pauses import PauseStore
from stratoq.adapters.progress import ProgressStore
from stratoq.adapters.progress import bound as bind_progress
from stratoq.adapters.store import Claimed, TaskStore
from stratoq.adapters.transport import Delivery, SqsTransport, TaskMessage, limits_of
from stratoq.core import registry
from stratoq.core.clock import now_ms
from stratoq.core.limits import LimitsState, TtlCache
from stratoq.core.models import Task
from stratoq.core.pauses import PauseCache
from stratoq.core.policy import (
    CANCEL_CHECK_SECONDS,
    MAX_VISIBILITY_SECONDS,
    MISSING_REREADS_MS,
    REREAD_WITHIN_MS,
    FailNow,
    OutcomeKind,
    WaitReason,
    busy_release_delay,
    decide,
    is_due,
    orphan_delay,
)
from stratoq.core.registry import TaskContext, cancel_check
from stratoq.observability import tracing
from stratoq.observability.metrics import Metrics
from stratoq.services.debounce import Debouncer
from stratoq.services.events import Events
from stratoq.services.flow import Admitted, FlowControl
from stratoq.services.handback import ACK_OBSOLETE, Action, Disposition, HandBack
from stratoq.services.leases import CancelWatch, LeaseKeeper, Stop
from stratoq.services.outcomes import Outcomes
from stratoq.services.runner import Job, Runner, unknown_task
from stratoq.services.task_locks import TaskLocks
from stratoq.services.workflows import Workflows

logger = logging.getLogger(__name__)

# Time a worker keeps after the task's own timeout to record the outcome.
RECORD_GRACE_MS = 15_000


def thread_holder() -> str:
    """Who runs an attempt in this thread, for people (`Task.holder`): `host/pid/slot`,
    the slot being the thread's name (a poller's slot threads are `stratoq-slot-<n>`)."""
    slot = threading.current_thread().name.removeprefix("stratoq-")
    return f"{socket.gethostname()}/{os.getpid()}/{slot}"


class Worker:
    """Processes deliveries. `lease_ms` and `time_left_ms` let each loop set its bounds."""

    def __init__(
        self,
        store: TaskStore,
        transport: SqsTransport,
        runner: Runner,
        *,
        keeper: LeaseKeeper | None = None,
        time_left_ms: Callable[[], int] | None = None,
        clock: Callable[[], int] = now_ms,
        rng: random.Random | None = None,
        locks: LockStore | None = None,
        progress: ProgressStore | None = None,
        metrics: Metrics | None = None,
        unknown_task_grace_seconds: int = 300,
        pauses: PauseCache | None = None,
        limits: TtlCache[LimitsState] | None = None,
        orphan_grace_seconds: int = 300,
        sleep: Callable[[float], None] = time.sleep,
        cancel_check_seconds: float = CANCEL_CHECK_SECONDS,
        workflows: Workflows | None = None,
        holder: Callable[[], str] = thread_holder,
        events: Events | None = None,
        back: HandBack | None = None,
        flow: FlowControl | None = None,
    ) -> None:
        # The defaults below serve a Worker built on its own (tests, tools); a process's
        # workers get theirs from the composition root (`Services.worker`), which shares
        # one of each between them.
        self.events = events or Events(store)  # state changes out (services/events.py)
        self.store = store
        self.transport = transport
        self.runner = runner
        self.keeper = keeper
        self.locks = locks or LockStore(store.client, store.table)
        self.progress = progress or ProgressStore(store.client, store.table)
        self.metrics = metrics if metrics is not None else Metrics()
        self._time_left_ms = time_left_ms
        self._clock = clock
        self._rng = rng or random.Random()
        self._unknown_grace_s = unknown_task_grace_seconds
        self._orphan_grace_s = orphan_grace_seconds
        self._sleep = sleep
        self._holder = holder
        # Inline attempts (no keeper) check for a cancel this often (CancelWatch).
        self._cancel_check_s = cancel_check_seconds
        # Read for a workflow node's dependencies' results (other tasks never reach it).
        self.workflows = workflows
        # Shared by a process's workers (Services.pauses): one read per TTL per process.
        self.pauses = pauses or PauseCache(PauseStore(store.client, store.table).read)
        self.shutting_down = threading.Event()
        # Set when the loop takes no more tasks (a poller's SIGTERM): a task sleeping
        # out the last second before its rate-limit token is given back, not started.
        self.stopping = threading.Event()
        self.back = back or HandBack(transport, self.metrics, self._rng, unknown_task_grace_seconds)
        self.outcomes = Outcomes(store, self.metrics, self.back, workflows, clock)
        self.task_locks = TaskLocks(store, self.locks, self.back, self._rng, clock)
        self.debouncer = Debouncer(store, self.metrics, self.events)
        self.flow = flow or FlowControl.over(
            store.client, store.table, self.back, limits, self.pauses.ttl_ms
        )

    def _lease_ms(self) -> int:
        if self.keeper is not None:
            return self.keeper.lease_seconds * 1000
        if self._time_left_ms is not None:
            # Lambda: the invocation cannot outlive its deadline, so neither may the lease.
            return self._time_left_ms() + RECORD_GRACE_MS
        return 15 * 60 * 1000 + RECORD_GRACE_MS

    def process(self, delivery: Delivery) -> Disposition:
        """Handle one message; the caller applies the returned Disposition to it."""
        try:
            msg = TaskMessage.decode(delivery.body)
        except ValueError as exc:
            # Such a message can never succeed; keeping it would only feed the DLQ.
            logger.error(
                "dropping malformed message",
                extra={"message_id": delivery.message_id, "reason": str(exc)},
            )
            return Disposition(Action.ACK, status="malformed")
        # The enqueue's trace continues here (observability/tracing.py): claim, run and
        # complete are children of this span.
        attributes = {tracing.TASK_ID: msg.task_id, tracing.TASK_NAME: msg.name}
        with tracing.consumer("stratoq.process", msg.trace, attributes) as span:
            disposition = self._process(delivery, msg)
            self.events.after(msg, disposition.status)  # before the ack: never lost
            tracing.note(span, {"stratoq.disposition": disposition.status})
            return disposition

    def _process(self, delivery: Delivery, msg: TaskMessage) -> Disposition:
        now = self._clock()
        if not is_due(msg.not_before_ms, now):
            return self.back.hop(delivery, msg, msg.not_before_ms, now)
        if self.pauses.state().holds(self.back.queue_of(delivery), msg.name):
            return self.back.wait(delivery, msg, msg.name, WaitReason.PAUSED, now)
        if msg.name is not None and registry.get(msg.name) is None:
            handed_back = self.back.unknown(delivery, msg, msg.name, now)
            if handed_back is not None:
                return handed_back
        admitted = self.flow.admit(delivery, msg, now, self._lease_ms(), self.stopping)
        if not isinstance(admitted, Admitted):
            return admitted
        msg, slots = admitted.msg, admitted.slots
        now = self._clock()  # after any sleep towards a rate-limit token: the start's time
        try:
            with tracing.span("stratoq.claim", {tracing.TASK_ID: msg.task_id}) as span:
                claim = self.store.claim(
                    msg.task_id, msg.tenant, now, self._lease_ms(), self._holder()
                )
                if isinstance(claim, Claimed):
                    tracing.note(span, tracing.task_attributes(claim.task))
            if not isinstance(claim, Claimed):
                if claim.reason == "missing" and msg.enqueued_ms is not None:
                    return self._before_record(delivery, msg, msg.enqueued_ms, now, slots)
                return self._refused(claim.reason, claim.task, claim.lease_expires_ms, msg, now)
            return self._run(delivery, msg, claim, slots)
        finally:
            self.flow.release(slots)

    def _before_record(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        enqueued_ms: int,
        now: int,
        slots: tuple[Slot, ...],
    ) -> Disposition:
        """An enqueue's message whose task is not stored (yet): sent before the write
        (docs/architecture.md, "The enqueue gap"). Look again within tens of ms, then hand
        it back unspent until the grace period ends; then drop it as an orphan."""
        if now - enqueued_ms < REREAD_WITHIN_MS:
            for wait_ms in MISSING_REREADS_MS:
                self._sleep(wait_ms / 1000)
                now = self._clock()
                claim = self.store.claim(
                    msg.task_id, msg.tenant, now, self._lease_ms(), self._holder()
                )
                if isinstance(claim, Claimed):
                    return self._run(delivery, msg, claim, slots)
                if claim.reason != "missing":
                    return self._refused(claim.reason, claim.task, claim.lease_expires_ms, msg, now)
        queue = self.back.queue_of(delivery)
        extra = {"task_id": msg.task_id, "task_name": msg.name, "enqueued_ms": enqueued_ms}
        delay = orphan_delay(enqueued_ms, now, self._orphan_grace_s * 1000)
        if delay is None:
            self.metrics.message_orphaned(queue, msg.name or "")
            logger.warning("dropping a message whose task was never stored", extra=extra)
            return Disposition(Action.ACK, status="orphan")
        logger.info("task not stored yet; message handed back", extra=extra)
        return self.back.hop(delivery, msg, now + delay * 1000, now, status="awaiting_record")

    def _refused(
        self,
        reason: str,
        task: Task | None,
        lease_expires_ms: int | None,
        msg: TaskMessage,
        now: int,
    ) -> Disposition:
        extra = {"task_id": msg.task_id, "reason": reason}
        if reason == "busy" and lease_expires_ms is not None:
            # Another worker holds the task; look again when its lease would have expired.
            logger.info("task is held by another worker", extra=extra)
            return Disposition(
                Action.RELEASE, delay=busy_release_delay(lease_expires_ms, now), status="busy"
            )
        if reason == "not_due":
            due = task.next_attempt_at if task is not None else None
            due_ms = int(due.timestamp() * 1000) if due else now
            delay = max(1, min(MAX_VISIBILITY_SECONDS, (due_ms - now) // 1000 + 1))
            return Disposition(Action.RELEASE, delay=delay, status="early")
        if reason == "final" and task is not None and task.workflow_id is not None:
            # A node's task recorded as final by a worker that may have died before its
            # workflow learned of it: tell the workflow again (each step is idempotent).
            return self.outcomes.node_ended(task, ACK_OBSOLETE)
        if reason == "missing":
            logger.warning("message for a task that does not exist", extra=extra)
        elif reason == "tenant":
            logger.error("message tenant does not match the task", extra=extra)
        return ACK_OBSOLETE

    def _run(
        self, delivery: Delivery, msg: TaskMessage, claim: Claimed, slots: tuple[Slot, ...]
    ) -> Disposition:
        task, token = claim.task, claim.token
        attempt = task.attempts
        log = {"task_id": task.id, "task_name": task.name, "attempt": attempt}
        if task.debounce_key is not None and attempt == 1 and not task.errors:
            # Only before its first attempt: a task that started (or was retried by
            # hand) runs on whatever superseded it since.
            superseded = self.debouncer.at_claim(claim, self.outcomes, log)
            if superseded is not None:
                return superseded
        self.events.started(claim)
        if task.cancel_requested_at is not None:
            # Cancelled while an earlier holder ran it (which died, or gave it back
            # unfinished): end it without running it again.
            lost = f"attempt {attempt - 1} was lost; the task was cancelled meanwhile"
            return self.outcomes.cancelled(claim, attempt - 1, lost if claim.took_over else "", log)
        if claim.took_over:
            lost_msg = f"attempt {attempt - 1} was lost: its worker stopped renewing the lease"
            if attempt - 1 >= task.max_attempts:
                logger.warning("last attempt was lost; failing the task", extra=log)
                return self.outcomes.record(
                    delivery, msg, claim, FailNow(OutcomeKind.LOST, lost_msg), attempt - 1
                )
            self.store.record_lost_attempt(task.id, token, attempt - 1, lost_msg, self._clock())
        if registry.get(task.name) is None and msg.name is None and self._unknown_grace_s > 0:
            # A message from before names travelled in messages: the claim told us the
            # name. Give the claim back and hand the task on as a newer worker would.
            if not self.store.unclaim(claim):
                return Disposition(Action.LEAVE, status="lost")
            # First hand-back and a grace period over 0: never None.
            handed = self.back.unknown(delivery, msg, task.name, self._clock())
            return handed or Disposition(Action.RELEASE, delay=1, status="handed_back")
        if msg.name is None and self.pauses.state().holds(self.back.queue_of(delivery), task.name):
            # A message without a name (see above), of a paused name: give it back alike.
            if not self.store.unclaim(claim):
                return Disposition(Action.LEAVE, status="lost")
            return self.back.wait(delivery, msg, task.name, WaitReason.PAUSED, self._clock())
        if msg.limits is None and limits_of(task) is not None:
            # A message from before limits travelled in messages: give the claim back and
            # send it again with them, to be checked before a claim.
            again = replace(msg, name=task.name, limits=limits_of(task))
            if self.store.unclaim(claim):
                return self.back.hop(delivery, again, None, self._clock(), status="handed_back")
            return Disposition(Action.LEAVE, status="lost")
        # Known and running here: the next message (retry, lock wait) starts a fresh
        # grace period and a fresh wait wherever it lands.
        # Its record exists: a later message that finds none is obsolete, not early.
        # A retry takes a rate-limit token of its own.
        msg = replace(msg, name=task.name, unknown_since_ms=None, waiting_since_ms=None)
        msg = replace(msg, enqueued_ms=None, rate_paid_ms=None)
        held: Acquired | None = None
        if task.lock_key is not None:
            taken = self.task_locks.take(delivery, msg, claim, log)
            if isinstance(taken, Disposition):
                return taken
            held = taken
        try:
            return self._attempt(delivery, msg, claim, held, slots, log)
        finally:
            if held is not None:
                self.task_locks.release(held, log)

    def _attempt(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        claim: Claimed,
        held: Acquired | None,
        slots: tuple[Slot, ...],
        log: dict[str, object],
    ) -> Disposition:
        task, token = claim.task, claim.token
        attempt = task.attempts
        self.metrics.task_started(task, claim.took_over)
        stop = Stop.NONE
        if registry.get(task.name) is None:
            outcome = unknown_task(task.name)
        else:
            timeout = task.timeout_seconds
            if self._time_left_ms is not None:
                # Lambda: stop before the function's own timeout so the outcome is recorded.
                left = (self._time_left_ms() - RECORD_GRACE_MS // 3) // 1000
                timeout = max(1, min(timeout, left))
            ctx = TaskContext(
                task_id=task.id,
                name=task.name,
                attempt=attempt,
                max_attempts=task.max_attempts,
                timeout_seconds=timeout,
                fencing_token=token,
                tenant=task.tenant,
                lock_token=held.token if held is not None else None,
                # Read only for a workflow's node ({} at once for other tasks).
                parent_results=self.workflows.parent_results(task) if self.workflows else {},
            )
            started = time.monotonic()
            try:
                with ExitStack() as scope:
                    if self.keeper is not None:
                        lost = self.keeper.track(delivery, task.id, token, held, slots)
                    else:
                        # No heartbeat (Lambda): a watch of its own tells the handler of
                        # a cancel, then stops waiting for it.
                        watch = scope.enter_context(
                            CancelWatch(self.store, task.id, token, self._cancel_check_s)
                        )
                        scope.enter_context(cancel_check(watch.requested.is_set))
                        lost = watch.stop
                    # Inline handlers take `stratoq.lock()` and report progress through
                    # this worker's store; process slots bind their own.
                    scope.enter_context(bound(self.locks))
                    scope.enter_context(bind_progress(self.progress))
                    with tracing.span("stratoq.run", tracing.task_attributes(task)) as span:
                        job = Job(task.name, task.payload, ctx, tracing.traceparent())
                        outcome = self.runner.run(job, lost)
                        tracing.note(span, {"stratoq.outcome": outcome.kind.value})
            finally:
                stop = self.keeper.untrack(token) if self.keeper else Stop.NONE
            log["duration_ms"] = int((time.monotonic() - started) * 1000)
            self.metrics.task_ran(task, time.monotonic() - started, outcome.kind)
        if stop is Stop.CANCELLED or outcome.kind is OutcomeKind.CANCELLED:
            return self.outcomes.cancelled(
                claim, attempt, "the attempt was stopped: task cancelled", log
            )
        if outcome.kind is OutcomeKind.LOST:
            if stop is Stop.LOCK_LOST:
                # Only the lock went (the lease is still ours): not the task's fault, so
                # give it back uncounted and let it wait for the lock again.
                released = self.store.release(task.id, task.tenant, token)
                logger.warning(
                    "task lock lost; task given back", extra={**log, "released": released}
                )
                return Disposition(Action.RELEASE, delay=1, status="locked")
            if self.shutting_down.is_set():
                released = self.store.release(task.id, task.tenant, token)
                logger.info("released at shutdown", extra={**log, "released": released})
                return Disposition(Action.RELEASE, delay=0, status="released")
            logger.warning("lease lost; leaving the task to its new holder", extra=log)
            return Disposition(Action.LEAVE, status="lost")
        decision = decide(outcome, attempt, task.max_attempts, task.backoff, self._rng)
        with tracing.span("stratoq.complete", tracing.task_attributes(task)) as span:
            done = self.outcomes.record(delivery, msg, claim, decision, attempt, log)
            tracing.note(span, {"stratoq.status": done.status})
            return done
