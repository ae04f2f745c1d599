"""Cancelling tasks: one by id, or every task of a tenant that matches a filter.

A task not started (queued, scheduled, waiting to retry) ends `cancelled` at once. A
running one gets a cancel request on its item (`TaskStore.cancel`); its worker sees
it within seconds (a poller's heartbeat, an inline attempt's `CancelWatch`), stops the
attempt as a timeout stops it, and records the task `cancelled` with the attempt in
its `errors` (kind `cancelled`); no retry follows. A finished task cannot be cancelled.

These are the entry points of every caller (the API's routes, and anything that
cancels tasks on a user's behalf): they count what they end in the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from stratoq.adapters.store import TaskStore
from stratoq.core.clock import now_ms, to_ms
from stratoq.core.errors import InvalidStateError, TaskNotFoundError
from stratoq.core.models import Task, TaskStatus
from stratoq.core.policy import CancelAction, cancel_action
from stratoq.observability.metrics import Metrics
from stratoq.services.events import Events

# The API runs in a Lambda with a 29 s timeout: stop after this long and say `more`.
TIME_BUDGET_SECONDS = 20.0
# Tasks read per listing page while looking for matches.
PAGE = 100


def cancel_task(
    store: TaskStore,
    metrics: Metrics,
    task_id: str,
    tenant: str,
    now: Callable[[], int] = now_ms,
    events: Events | None = None,
) -> Task:
    """Cancel one of `tenant`'s tasks: the task as it is now, `cancelled` or (running)
    with `cancel_requested_at`. Raises TaskNotFoundError (none, or another tenant's)
    and InvalidStateError (already final). A running task's `cancelled` event comes
    from its worker, when the attempt stops."""
    task = store.cancel(task_id, tenant, now())
    if task.status is TaskStatus.CANCELLED:
        metrics.task_cancelled(task)
        if events is not None:
            events.ended([task])
    return task


def cancel_unstarted(
    store: TaskStore,
    metrics: Metrics,
    task_id: str,
    tenant: str,
    reason: str,
    now: Callable[[], int] = now_ms,
    events: Events | None = None,
) -> Task | None:
    """Cancel one of `tenant`'s tasks only if it has not started (`queued` or
    `scheduled`), `reason` noted in its `errors`: the task, `cancelled`; None if it
    started (it runs to its end), ended or is gone. A superseded debounced task
    (`services.debounce`) ends this way."""
    try:
        task = store.cancel_unstarted(task_id, tenant, now(), reason)
    except (InvalidStateError, TaskNotFoundError):
        return None
    metrics.task_cancelled(task)
    if events is not None:
        events.ended([task])
    return task


@dataclass(frozen=True)
class CancelFilter:
    """Which tasks a bulk cancel takes: every field given must match (None: any).
    `status` must be one a task can be cancelled in (not final)."""

    queue: str | None = None
    name: str | None = None
    status: TaskStatus | None = None
    created_before: datetime | None = None

    def __post_init__(self) -> None:
        if self.status is not None and cancel_action(self.status) is CancelAction.REFUSE:
            raise ValueError(f"a {self.status.value} task cannot be cancelled")

    def matches(self, task: Task) -> bool:
        """Does `task` match (the listing already applied name, status and time)?"""
        return (self.queue is None or task.queue == self.queue) and (
            cancel_action(task.status) is not CancelAction.REFUSE
        )


@dataclass
class CancelReport:
    """What a bulk cancel did."""

    cancelled: int = 0  # not started: ended `cancelled` now
    requested: int = 0  # running: asked to stop; each ends `cancelled` within seconds
    more: bool = False  # stopped at max_tasks or the time budget: call again

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cancel_matching(
    store: TaskStore,
    metrics: Metrics,
    tenant: str,
    which: CancelFilter,
    max_tasks: int = 1000,
    *,
    budget_seconds: float = TIME_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], int] = now_ms,
    events: Events | None = None,
) -> CancelReport:
    """Cancel up to `max_tasks` of `tenant`'s tasks that match `which`, newest first.

    Reads the tenant's listing page by page (from `created_before` down, if given);
    each match is one conditional cancel, as `cancel_task` does. A task that finished
    or changed meanwhile is skipped.
    """
    report = CancelReport()
    token: str | None = None
    deadline = clock() + budget_seconds
    before = to_ms(which.created_before)
    while True:
        if clock() >= deadline:
            report.more = True
            return report
        page, token = store.list_tasks(tenant, which.status, which.name, PAGE, token, before)
        for task in page:
            if not which.matches(task):
                continue
            if report.cancelled + report.requested >= max_tasks:
                report.more = True
                return report
            try:
                done = cancel_task(store, metrics, task.id, tenant, now, events)
            except (InvalidStateError, TaskNotFoundError):
                continue  # finished (or removed) meanwhile
            if done.status is TaskStatus.CANCELLED:
                report.cancelled += 1
            else:
                report.requested += 1
        if token is None:
            return report
