"""Debounce (docs/flow-control.md#debounce): of a tenant's tasks enqueued with one
`debounce_key`, only the last of a burst runs, `debounce_seconds` after its enqueue.

Each debounced task is stored `scheduled` for its window, then written into its key's
item (`adapters.debounce`), which answers with the task it replaced: that one, if it has
not started, is cancelled through the cancel path, its `errors` saying
"debounced: superseded by <id>". A running (or retrying) one is left to finish.

The worker is the authority: before a debounced task's first attempt it reads the item,
and a task that is not the key's latest is cancelled with the same reason instead of
run. That covers an enqueuer that died between its two writes and enqueues that raced.
A task without a `debounce_key` never reaches this module: no request is made for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from stratoq.adapters.debounce import DebounceStore
from stratoq.adapters.store import Claimed, TaskStore
from stratoq.core.clock import now_ms, to_ms
from stratoq.core.models import Task
from stratoq.observability.metrics import Metrics
from stratoq.services.cancel import cancel_unstarted
from stratoq.services.events import Events
from stratoq.services.handback import Action, Disposition

if TYPE_CHECKING:
    from stratoq.services.outcomes import Outcomes

logger = logging.getLogger(__name__)


def superseded_reason(by: str) -> str:
    """The reason a superseded task's `errors` give (kind `cancelled`)."""
    return f"debounced: superseded by {by}"


def enqueued_us(task: Task) -> int:
    """When a task was enqueued, in microseconds: the order of a key's tasks (two
    enqueues of one process in one millisecond are still ordered)."""
    return int(task.created_at.timestamp() * 1_000_000)


class Debouncer:
    """Keeps each debounce key's latest task, and cancels the ones it supersedes."""

    def __init__(self, store: TaskStore, metrics: Metrics, events: Events) -> None:
        self.store = store
        self.items = DebounceStore(store.client, store.table)
        self.metrics = metrics
        self.events = events

    def stored(self, tasks: Sequence[Task]) -> None:
        """After `tasks` (in request order) were stored: make each key's last one its
        latest, and cancel what it supersedes. Earlier tasks of one key in `tasks` are
        superseded by the last at once (the last in a batch wins, whatever the clock).
        One UpdateItem per key, and one per task cancelled."""
        last: dict[str, Task] = {}
        for t in tasks:
            if t.debounce_key is not None:
                last[t.debounce_key] = t  # one tenant per call
        for t in tasks:
            if t.debounce_key is not None and last[t.debounce_key] is not t:
                self._cancel(t, last[t.debounce_key].id)
        for key, t in last.items():
            due = to_ms(t.next_attempt_at) or to_ms(t.created_at) or 0
            won = self.items.claim(t.tenant, key, t.id, enqueued_us(t), due)
            if not won.won:
                # A later enqueue of the key wrote first: ours is the superseded one.
                if won.previous is not None:
                    self._cancel(t, won.previous)
            elif won.previous is not None:
                self._cancel_id(won.previous, t.tenant, t.id)

    def at_claim(
        self, claim: Claimed, outcomes: Outcomes, log: dict[str, object]
    ) -> Disposition | None:
        """The worker's check of a claimed debounced task before its first attempt:
        cancelled (its reason naming the key's latest task) if the key's item names a
        later task; None: run it. One consistent GetItem."""
        try:
            by = self.superseded_by(claim.task)
        except Exception:
            # Unread, it might run beside its successor: give it back for a second.
            logger.exception("reading the task's debounce item failed", extra=log)
            if not self.store.unclaim(claim):
                return Disposition(Action.LEAVE, status="lost")
            return Disposition(Action.RELEASE, delay=1, status="limits_unavailable")
        if by is None:
            return None
        logger.info("debounced task superseded; cancelled", extra={**log, "superseded_by": by})
        return outcomes.cancelled(claim, 0, superseded_reason(by), log, requested=False)

    def superseded_by(self, task: Task) -> str | None:
        """The key's latest task if it is not `task` (the worker then cancels `task`);
        None: `task` is the latest (or the item expired: nothing supersedes it)."""
        assert task.debounce_key is not None
        latest = self.items.latest(task.tenant, task.debounce_key)
        return latest if latest is not None and latest != task.id else None

    def _cancel(self, task: Task, by: str) -> None:
        self._cancel_id(task.id, task.tenant, by)

    def _cancel_id(self, task_id: str, tenant: str, by: str) -> None:
        reason = superseded_reason(by)
        done = cancel_unstarted(
            self.store, self.metrics, task_id, tenant, reason, now_ms, self.events
        )
        if done is None:
            logger.info(
                "superseded task already started or ended; left alone",
                extra={"task_id": task_id, "superseded_by": by},
            )
