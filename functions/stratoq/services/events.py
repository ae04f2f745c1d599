"""Task events out of the worker and the enqueuer, and their delivery to webhooks.

`Events` is the one hook they call. It costs a task nothing more than a cached read per
tenant per TTL (`SubscriptionCache`) unless a webhook of the tenant wants the event, or
an EventBridge bus is configured: then it sends one message per subscription to the
events queue (and puts the event on the bus).

No event is lost when a worker dies: every event is sent *before* the task's message is
acknowledged, and a message delivered again re-sends what its state says happened.
`after(msg, status)` derives the event from the task item itself (a consistent read,
only when someone listens): a worker that died after recording `succeeded` but before
sending the event leaves the message, whose next delivery finds the task final and
sends the event again; a takeover re-sends the lost attempt's `started`. Re-sent events
carry the same id (task, type, attempt): receivers dedupe.

`Deliverer` handles one events-queue message: POST, signed; on failure the message
comes back after an exponential backoff (its visibility timeout), and after the last
attempt a dead-letter record is kept (`GET /v1/webhooks/{id}/failures`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stratoq.adapters.store import Claimed, TaskStore
from stratoq.adapters.transport import TaskMessage
from stratoq.adapters.webhooks import (
    EventBus,
    EventQueue,
    SubscriptionStore,
    WebhookNotFoundError,
    post,
)
from stratoq.core.clock import now_ms
from stratoq.core.events import Event, SubscriptionCache, retry_delay
from stratoq.core.models import Task, TaskStatus

logger = logging.getLogger(__name__)

# Worker outcomes after which the task item says which event to (re-)send: the
# outcomes themselves, and the refusals of a message delivered again ("duplicate": the
# task is final; "early": it waits for its retry).
_REREAD = frozenset({"succeeded", "retrying", "failed", "cancelled", "duplicate", "early"})
_ENDED = frozenset(
    {TaskStatus.RETRYING, TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)


class Events:
    """Emits task events to the webhooks that want them and to the bus."""

    def __init__(
        self,
        store: TaskStore,
        subscriptions: SubscriptionCache | None = None,
        queue: EventQueue | None = None,
        bus: EventBus | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.subscriptions = subscriptions if queue is not None else None
        self.queue = queue
        self.bus = bus
        self._clock = clock

    def _listened(self, tenant: str, event_type: str | None = None) -> list[str]:
        """The ids of the tenant's webhooks that want `event_type` (any type: None)."""
        if self.subscriptions is None:
            return []
        subs = self.subscriptions.of(tenant)
        return [s.id for s in subs if event_type is None or s.wants(event_type)]

    def emit(self, task: Task, event_type: str, attempt: int) -> None:
        """Send `task`'s event `event_type` of attempt `attempt` wherever it is wanted.
        Raises if a send fails: the caller keeps its message, and the event is sent again."""
        subs = self._listened(task.tenant, event_type)
        if not subs and self.bus is None:
            return
        event = Event(
            event_type, task.id, task.tenant, task.name, task.queue, attempt, self._clock()
        )
        if self.bus is not None:
            self.bus.put(event)
        if subs and self.queue is not None:
            self.queue.send(event, subs)

    def queued(self, tasks: Iterable[Task]) -> None:
        """Tasks just stored (queued or scheduled). A failed send is logged, not raised:
        the tasks are stored and their messages sent, and failing the enqueue now would
        make its caller enqueue them twice."""
        self._recorded(tasks, "queued")

    def ended(self, tasks: Iterable[Task]) -> None:
        """Tasks an API call just ended (a queued task cancelled): logged if the send
        fails, as `queued`, since the change itself is recorded."""
        self._recorded(tasks, None)

    def _recorded(self, tasks: Iterable[Task], event_type: str | None) -> None:
        for task in tasks:
            kind = event_type or task.status.value
            try:
                self.emit(task, kind, task.attempts)
            except Exception:
                logger.exception(f"sending a {kind} event failed", extra={"task_id": task.id})

    def started(self, claim: Claimed) -> None:
        """An attempt claimed; after a takeover, the lost attempt's `started` again."""
        task = claim.task
        if claim.took_over and task.attempts > 1:
            self.emit(task, "started", task.attempts - 1)
        self.emit(task, "started", task.attempts)

    def after(self, msg: TaskMessage, status: str) -> None:
        """After the worker handled `msg` (outcome `status`), before it is acknowledged:
        the event the task item's state is (`retrying`, or a final status)."""
        if status not in _REREAD or (self.bus is None and not self._listened(msg.tenant)):
            return
        task = self.store.get(msg.task_id, msg.tenant)
        if task is not None and task.status in _ENDED:
            self.emit(task, task.status.value, task.attempts)


@dataclass(frozen=True)
class Delivered:
    """What the deliverer did with one message: `done` (delete it) or come back after
    `retry_in` seconds."""

    done: bool
    retry_in: int = 0
    outcome: str = ""


class Deliverer:
    """POSTs one event to one webhook; retries with backoff; dead-letters at the end."""

    def __init__(
        self,
        subscriptions: SubscriptionStore,
        max_attempts: int,
        retry_base_seconds: int,
        post: Callable[..., int | str] = post,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.subscriptions = subscriptions
        self.max_attempts = max(1, max_attempts)
        self.retry_base_seconds = max(1, retry_base_seconds)
        self._post = post
        self._clock = clock

    def deliver(self, body: str, receives: int) -> Delivered:
        """Handle an events-queue message received `receives` times (1 the first)."""
        try:
            data = json.loads(body)
            event = Event.from_body(data["event"])
            sub_id = str(data["subscription"])
        except (ValueError, KeyError, TypeError):
            logger.error("dropping a malformed event message")
            return Delivered(True, outcome="malformed")
        try:
            sub = self.subscriptions.get(event.tenant, sub_id)
        except WebhookNotFoundError:
            return Delivered(True, outcome="unsubscribed")
        payload = json.dumps(event.body(), separators=(",", ":")).encode()
        answer = self._post(sub, payload, event.id, self._clock() // 1000)
        if isinstance(answer, int) and 200 <= answer < 300:
            return Delivered(True, outcome="delivered")
        extra = {"webhook_id": sub.id, "event_id": event.id, "attempt": receives}
        if receives < self.max_attempts:
            delay = retry_delay(receives, self.retry_base_seconds)
            logger.info("webhook delivery failed; retrying", extra={**extra, "answer": answer})
            return Delivered(False, retry_in=delay, outcome="retrying")
        self.subscriptions.record_failure(
            sub,
            {
                "event": event.body(),
                "attempts": receives,
                "last_answer": answer,
                "failed_at_ms": self._clock(),
            },
        )
        logger.warning("webhook delivery failed for good; dead-lettered", extra=extra)
        return Delivered(True, outcome="dead_lettered")
