"""The one enqueue path (API, scheduler, SDK in-process, tests): store, then send."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from stratoq.adapters.store import TaskStore
from stratoq.adapters.transport import Outgoing, SqsTransport, TaskMessage, outgoing_for
from stratoq.core.clock import to_ms
from stratoq.core.errors import EnqueueError, PayloadTooLargeError, UnknownQueueError
from stratoq.core.ids import new_task_id
from stratoq.core.models import (
    MAX_PAYLOAD_BYTES,
    Task,
    TaskRequest,
    TaskStatus,
    payload_size,
    utcnow,
)
from stratoq.core.registry import apply_options, deployment_defaults
from stratoq.core.settings import Settings
from stratoq.observability.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enqueued:
    task: Task
    created: bool  # False: the idempotency key matched an existing task


class Enqueuer:
    """Turns TaskRequests into stored tasks and SQS messages."""

    def __init__(
        self,
        store: TaskStore,
        transport: SqsTransport,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.transport = transport
        self.settings = settings
        self.defaults = deployment_defaults(settings)
        self.metrics = metrics if metrics is not None else Metrics()

    def build(self, request: TaskRequest, tenant: str = "default") -> Task:
        """The Task a request describes (validated, defaults filled, nothing stored).

        The deployment's defaults fill what the request leaves open; a task's own
        options are the caller's to apply first (the API and the SDK do).
        """
        request = apply_options(request, self.defaults)
        # Filled: the deployment's defaults have both.
        assert request.max_attempts is not None and request.timeout_seconds is not None
        if request.queue not in self.transport.queue_names:
            known = ", ".join(sorted(self.transport.queue_names))
            raise UnknownQueueError(
                f"unknown queue {request.queue!r}; this deployment has: {known}"
            )
        size = payload_size(request.payload)
        if size > MAX_PAYLOAD_BYTES:
            # Checked here, not only by the API: every way in (bridges, schedules, the
            # SDK in-process) must refuse it before DynamoDB does, as one bad task.
            raise PayloadTooLargeError(
                f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes"
            )
        now = utcnow()
        due = request.run_at
        if request.delay_seconds:
            due = now + timedelta(seconds=request.delay_seconds)
        if due is not None and due <= now:
            due = None  # run_at in the past: run now
        return Task(
            id=new_task_id(to_ms(now)),
            tenant=tenant,
            name=request.name,
            status=TaskStatus.SCHEDULED if due else TaskStatus.QUEUED,
            queue=request.queue,
            priority=request.priority,
            payload=request.payload,
            max_attempts=request.max_attempts,
            timeout_seconds=request.timeout_seconds,
            backoff=request.backoff
            or Task.model_fields["backoff"].get_default(call_default_factory=True),
            # `unique` derives the key from name and payload (TaskRequest.unique_key).
            idempotency_key=request.effective_idempotency_key(),
            lock_key=request.lock_key,
            created_at=now,
            scheduled_for=due,
            next_attempt_at=due,
        )

    def enqueue(self, request: TaskRequest, tenant: str = "default") -> Enqueued:
        task = self.build(request, tenant)
        stored, created = self.store.create(task, to_ms(task.created_at) or 0, _window_ms(request))
        if created or stored.status in (TaskStatus.QUEUED, TaskStatus.SCHEDULED):
            # A repeat of a request whose task never started may be the caller retrying
            # after our send failed: sending again is safe (claims are deduplicated).
            self._send([stored])
        if created:
            self.metrics.tasks_enqueued([stored])
        return Enqueued(stored, created)

    def enqueue_many(
        self, requests: Sequence[TaskRequest], tenant: str = "default"
    ) -> list[Enqueued]:
        """Enqueue in bulk: batched writes for plain tasks, one by one with idempotency keys.

        Results are in request order. Entries sharing a key (explicit or `unique`) make
        one task: the first entry decides it, later ones answer it with `created=False`,
        as a key stored by an earlier request does.
        """
        tasks = [self.build(r, tenant) for r in requests]
        plain = [t for t in tasks if t.idempotency_key is None]
        self.store.create_many(plain)
        results: dict[str, Enqueued] = {t.id: Enqueued(t, True) for t in plain}
        to_send = list(plain)
        by_key: dict[str, Task] = {}
        for r, t in zip(requests, tasks, strict=True):
            if t.idempotency_key is None:
                continue
            if t.idempotency_key in by_key:
                # Same key earlier in this batch: no second write (the record would send
                # us back to the first task anyway), and no second message.
                results[t.id] = Enqueued(by_key[t.idempotency_key], False)
                continue
            stored, created = self.store.create(t, to_ms(t.created_at) or 0, _window_ms(r))
            by_key[t.idempotency_key] = stored
            results[t.id] = Enqueued(stored, created)
            if created or stored.status in (TaskStatus.QUEUED, TaskStatus.SCHEDULED):
                to_send.append(stored)
        self._send(to_send)
        self.metrics.tasks_enqueued(r.task for r in results.values() if r.created)
        return [results[t.id] for t in tasks]

    def send_task(self, task: Task) -> None:
        """(Re)send the message of a stored, runnable task (e.g. after a manual retry)."""
        self._send([task])
        self.metrics.tasks_enqueued([task])

    def send_tasks(self, tasks: Sequence[Task], *, count_enqueued: bool = True) -> None:
        """(Re)send the messages of stored, runnable tasks in batches, routed as enqueue
        routes them. `count_enqueued=False` for re-sends of tasks already counted."""
        self._send(tasks)
        if count_enqueued:
            self.metrics.tasks_enqueued(tasks)

    def _send(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        now = to_ms(utcnow()) or 0
        messages: list[Outgoing] = [
            outgoing_for(
                # Each priority has its own SQS queue where one is configured.
                self.transport.route(t.queue, t.priority.value),
                TaskMessage(t.id, t.tenant, name=t.name),
                to_ms(t.next_attempt_at),
                now,
            )
            for t in tasks
        ]
        try:
            self.transport.send(messages)
        except EnqueueError:
            raise
        except Exception as exc:
            logger.exception("sending task messages failed", extra={"count": len(tasks)})
            raise EnqueueError(
                f"could not hand {len(tasks)} task(s) to SQS: {type(exc).__name__}"
            ) from exc


def _window_ms(request: TaskRequest) -> int | None:
    """The request's own idempotency window in ms (None: the store's default)."""
    seconds = request.idempotency_window_seconds
    return None if seconds is None else seconds * 1000
