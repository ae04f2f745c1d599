"""What a worker writes once an attempt has an outcome: succeeded, a retry scheduled,
failed, or cancelled; each write fenced by the lease token. A workflow node's end is
then told to its workflow (`services.workflows`), and a handler's spawned children are
made before the success that reveals them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stratoq.adapters.store import Claimed, TaskStore
from stratoq.adapters.transport import Delivery, TaskMessage
from stratoq.core.models import Task, TaskStatus
from stratoq.core.policy import Complete, FailNow, RetryLater
from stratoq.observability.metrics import Metrics
from stratoq.services.handback import Action, Disposition, HandBack
from stratoq.services.workflows import Workflows

logger = logging.getLogger(__name__)


class Outcomes:
    """Records attempts' outcomes for a `Worker` (its store, metrics and hand-backs)."""

    def __init__(
        self,
        store: TaskStore,
        metrics: Metrics,
        back: HandBack,
        workflows: Workflows | None,
        clock: Callable[[], int],
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.back = back
        # Told when a workflow node's task ends (tasks outside workflows never reach it).
        self.workflows = workflows
        self._clock = clock

    def record(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        claim: Claimed,
        decision: Complete | RetryLater | FailNow,
        attempt: int,
        log: dict[str, object] | None = None,
    ) -> Disposition:
        """Record `decision` for attempt `attempt` of the claimed task; the Disposition
        of its message (a retry is a fresh delayed message)."""
        task, token = claim.task, claim.token
        now = self._clock()
        log = {**(log or {}), "task_id": task.id, "task_name": task.name, "attempt": attempt}
        if isinstance(decision, Complete):
            # Children first: a crash before the record reruns the attempt, whose
            # children have fixed ids and are not made twice.
            children = decision.children
            if children and not self._in_workflow(
                lambda w: w.spawn(task, children), task, "making spawned children"
            ):
                return Disposition(Action.LEAVE, status="spawn_pending")
            ok = self.store.complete(task.id, task.tenant, token, decision.result, now)
            status = "succeeded"
        elif isinstance(decision, RetryLater):
            due = now + decision.delay_seconds * 1000
            ok = self.store.schedule_retry(
                task.id, task.tenant, token, attempt, decision.kind, decision.message, due, now
            )
            status = "retrying"
            if ok:
                self.metrics.task_finished(task, status)
                log.update(outcome=decision.kind.value, retry_in_s=decision.delay_seconds)
                logger.info("task attempt failed; retrying", extra=log)
                # A fresh message restarts the receive count, which is kept for the
                # DLQ redrive of messages that crash workers before anything is recorded.
                return self.back.hop(delivery, msg, due, now, status)
        else:
            ok = self.store.fail(
                task.id, task.tenant, token, attempt, decision.kind, decision.message, now
            )
            status = "failed"
            log["outcome"] = decision.kind.value
        if not ok:
            # Refused: the lease was lost, or the task was cancelled since the last check
            # (the cancel wins; `finish_cancelled` is refused in the first case).
            message = f"task cancelled before the attempt's outcome ({status}) was recorded"
            return self.cancelled(claim, attempt, message, log)
        self.metrics.task_finished(task, status)
        logger.info(f"task {status}", extra=log)
        done = Disposition(Action.ACK, status=status)
        if task.workflow_id is not None:
            return self.node_ended(task.model_copy(update={"status": TaskStatus(status)}), done)
        return done

    def node_ended(self, task: Task, done: Disposition) -> Disposition:
        """Tell a node's workflow that its task ended; `done`, or keep the message (its
        next delivery tells the workflow again) if that failed."""
        ok = self._in_workflow(lambda w: w.ended(task), task, "telling its workflow it ended")
        return done if ok else Disposition(Action.LEAVE, status="workflow_pending")

    def _in_workflow(self, step: Callable[[Workflows], None], task: Task, what: str) -> bool:
        """Run a workflow step (idempotent); False if it failed: the caller keeps the
        message, and its next delivery runs the step again."""
        try:
            if self.workflows is None:
                raise RuntimeError("this worker has no workflow service")
            step(self.workflows)
        except Exception:
            logger.exception(f"{what} failed; the message is kept", extra={"task_id": task.id})
            return False
        return True

    def cancelled(
        self,
        claim: Claimed,
        attempt: int,
        message: str,
        log: dict[str, object],
        *,
        requested: bool = True,
    ) -> Disposition:
        """Record the claimed task `cancelled` (its attempt `attempt` noted with
        `message`, if any): a user cancelled it while it ran (`requested=False`: the
        worker found it superseded before it ran). No retry follows."""
        task = claim.task
        if not self.store.finish_cancelled(
            task.id, task.tenant, claim.token, attempt, message, self._clock(), requested=requested
        ):
            logger.warning("lease lost before the outcome was recorded", extra=log)
            return Disposition(Action.LEAVE, status="lost")
        self.metrics.task_cancelled(task)
        logger.info("task cancelled while running", extra=log)
        done = Disposition(Action.ACK, status="cancelled")
        if task.workflow_id is not None:
            ended = task.model_copy(update={"status": TaskStatus.CANCELLED})
            return self.node_ended(ended, done)
        return done
