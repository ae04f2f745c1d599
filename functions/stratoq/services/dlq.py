"""Dead tasks: redrive a dead-letter queue, retry failed tasks in bulk.

SQS has its own redrive (StartMessageMoveTask), but it moves message bodies blindly and
the emulator does not implement it. Redrive here looks at each message's task instead:

- `failed`: requeued (attempts reset, as `POST /v1/tasks/{id}/retry` does) and sent
  again: **redriven**;
- still runnable or running (a poison message that crashed workers before anything was
  recorded): its message is sent again: **resent** (a running task's claim takes over
  once the lease has lapsed; a live lease makes the duplicate wait);
- missing, another tenant's, succeeded or cancelled, or not a task message: **dropped**.

A message leaves the DLQ only after its task's fresh message was sent (or it was
dropped), so a failed send leaves it there for the next redrive (**left**). Every call
is batched: receive 10, one BatchGetItem, one send batch, one delete batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from stratoq.adapters.transport import SQS_BATCH, Delivery, TaskMessage
from stratoq.core.clock import to_ms
from stratoq.core.errors import (
    EnqueueError,
    InvalidStateError,
    NoDeadLetterQueueError,
    TaskNotFoundError,
)
from stratoq.core.models import (
    FINAL_STATUSES,
    REDRIVE_DEFAULT_MESSAGES,
    Task,
    TaskStatus,
    utcnow,
)
from stratoq.core.priority import expand
from stratoq.services.enqueue import Enqueuer

logger = logging.getLogger(__name__)

# The API runs in a Lambda with a 29 s timeout: stop taking new batches after this long
# and say there may be more (`more`), rather than be cut off mid-batch.
TIME_BUDGET_SECONDS = 20.0
# Long enough to handle one batch; a crash mid-batch hands messages back after it.
VISIBILITY_SECONDS = 60


@dataclass
class RedriveReport:
    """What one redrive did, in message counts."""

    queue: str
    received: int = 0
    redriven: int = 0  # failed tasks requeued and sent again
    resent: int = 0  # runnable or running tasks whose message was sent again
    dropped: int = 0  # missing, finished (succeeded, cancelled) or malformed
    left: int = 0  # sending failed: left in the DLQ for the next redrive
    more: bool = False  # stopped at max_messages or the time budget: run it again

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def redrive(
    core: Enqueuer,
    queue: str,
    max_messages: int = REDRIVE_DEFAULT_MESSAGES,
    *,
    budget_seconds: float = TIME_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> RedriveReport:
    """Move up to `max_messages` messages from `queue`'s DLQ back to work (see module doc).

    `queue` is a logical queue: the DLQs of all its SQS queues (one per priority, where
    configured) are drained, each found through its queue's RedrivePolicy; priority
    queues that share one DLQ drain it once. Fresh messages go out through the enqueue
    path, so each lands in its task's priority queue.
    """
    urls = [core.transport.dead_letter_url(key) for key in queue_keys(core, queue)]
    dlqs = list(dict.fromkeys(u for u in urls if u is not None))
    if not dlqs:
        raise NoDeadLetterQueueError(f"queue {queue!r} has no dead-letter queue")
    report = RedriveReport(queue)
    deadline = clock() + budget_seconds
    for dlq in dlqs:
        while report.received < max_messages:
            if clock() >= deadline:
                report.more = True
                return report
            want = min(SQS_BATCH, max_messages - report.received)
            # A 1 s long poll asks every SQS server (a short poll samples some and can
            # answer empty while messages remain); an empty answer ends this DLQ.
            batch = core.transport.receive_url(dlq, want, 1, VISIBILITY_SECONDS)
            if not batch:
                break
            report.received += len(batch)
            _redrive_batch(core, batch, report)
        else:
            report.more = True
            return report
    return report


def queue_keys(core: Enqueuer, queue: str) -> list[str]:
    """The configured SQS queues of a logical queue: itself and `<queue>:<priority>`."""
    return expand(core.transport.keys, [queue]) if queue in core.transport.queue_names else []


def _redrive_batch(core: Enqueuer, batch: list[Delivery], report: RedriveReport) -> None:
    messages: dict[str, TaskMessage | None] = {}
    for d in batch:
        try:
            messages[d.message_id] = TaskMessage.decode(d.body)
        except ValueError:
            messages[d.message_id] = None  # never a task: nothing could ever run it
    tasks = core.store.get_many([m.task_id for m in messages.values() if m is not None])
    now = to_ms(utcnow()) or 0
    to_send: dict[str, Task] = {}  # one message per task, however many copies were dead
    revived: set[str] = set()  # ids of failed tasks requeued here
    kinds: dict[str, str] = {}
    for d in batch:
        msg = messages[d.message_id]
        task = tasks.get(msg.task_id) if msg is not None else None
        if msg is None or task is None or task.tenant != msg.tenant:
            kinds[d.message_id] = "dropped"
            continue
        if task.id in to_send:
            kinds[d.message_id] = "dropped"  # a second copy of a task already handled
            continue
        if task.status is TaskStatus.FAILED:
            try:
                task = core.store.requeue(task.id, task.tenant, now)
            except (InvalidStateError, TaskNotFoundError):
                # Retried by someone else meanwhile: they sent its message already.
                kinds[d.message_id] = "dropped"
                continue
            kinds[d.message_id] = "redriven"
            revived.add(task.id)
        elif task.status in FINAL_STATUSES:
            kinds[d.message_id] = "dropped"
            continue
        else:
            kinds[d.message_id] = "resent"
        to_send[task.id] = task
    done = [d for d in batch if kinds[d.message_id] == "dropped"]
    sent = [d for d in batch if kinds[d.message_id] != "dropped"]
    try:
        # Requeued failed tasks count as enqueued again (as a manual retry does); a
        # resent message of a live task is not a new task.
        core.send_tasks([t for i, t in to_send.items() if i in revived])
        core.send_tasks([t for i, t in to_send.items() if i not in revived], count_enqueued=False)
        done += sent
    except EnqueueError:
        # The requeued tasks are runnable now: the next redrive resends them.
        logger.exception("redrive could not send task messages", extra={"count": len(to_send)})
        report.left += len(sent)
        sent = []
    for d in sent:
        if kinds[d.message_id] == "redriven":
            report.redriven += 1
        else:
            report.resent += 1
    report.dropped += sum(1 for d in batch if kinds[d.message_id] == "dropped")
    # Only now: a message leaves the DLQ once its task has a live message again.
    core.transport.delete(done)


@dataclass
class RetryReport:
    """What a bulk retry of failed tasks did."""

    retried: list[str]
    more: bool  # failed tasks remain (max_tasks or the time budget was reached)

    def as_dict(self) -> dict[str, object]:
        return {"retried": len(self.retried), "task_ids": self.retried, "more": self.more}


@dataclass(frozen=True)
class FailedFilter:
    """Which failed tasks a bulk retry takes: every field given must match (None: any);
    creation times in epoch ms, both exclusive."""

    name: str | None = None
    queue: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None

    def page(
        self, core: Enqueuer, tenant: str, limit: int, token: str | None
    ) -> tuple[list[Task], str | None]:
        """A page of the matching failed tasks (the sparse failed-task index)."""
        return core.store.list_tasks(
            tenant,
            TaskStatus.FAILED,
            self.name,
            limit,
            token,
            self.created_before_ms,
            queue=self.queue,
            created_after_ms=self.created_after_ms,
        )


def retry_failed(
    core: Enqueuer,
    tenant: str,
    which: FailedFilter | None = None,
    max_tasks: int = 100,
    *,
    budget_seconds: float = TIME_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> RetryReport:
    """Requeue up to `max_tasks` of a tenant's failed tasks that match `which` (newest
    first) and send them.

    Reads the sparse failed-task index page by page (the time range as a key condition,
    name and queue as a filter: see `adapters.store.listing`); each task is one
    conditional requeue (the same as `POST /v1/tasks/{id}/retry`), the messages go out
    in batches.
    """
    which = which or FailedFilter()
    retried: list[str] = []
    token: str | None = None
    deadline = clock() + budget_seconds
    while len(retried) < max_tasks:
        if clock() >= deadline:
            return RetryReport(retried, True)
        page, token = which.page(core, tenant, min(100, max_tasks - len(retried)), token)
        requeued: list[Task] = []
        now = to_ms(utcnow()) or 0
        for task in page:
            try:
                requeued.append(core.store.requeue(task.id, tenant, now))
            except (InvalidStateError, TaskNotFoundError):
                continue  # retried by someone else meanwhile
        try:
            core.send_tasks(requeued)
        except EnqueueError as exc:
            # They are `queued` now, out of the failed index: name them, so that a retry
            # by id (which re-sends a queued task that never started) recovers them.
            ids = ", ".join(t.id for t in requeued)
            raise EnqueueError(
                f"{exc}; these tasks are queued but unsent, retry them by id: {ids}"
            ) from exc
        retried.extend(t.id for t in requeued)
        if token is None:
            return RetryReport(retried, False)
    # Stopped at max_tasks: say whether any failed task is left (one cheap read; with a
    # name or queue filter an empty page proves nothing, so the page token decides).
    if which.name is None and which.queue is None:
        left, _ = which.page(core, tenant, 1, None)
        return RetryReport(retried, bool(left))
    return RetryReport(retried, token is not None)
