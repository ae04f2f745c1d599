"""The one enqueue path (API, scheduler, SDK in-process, tests): send, then store.

The message goes first so that no process dying between the two steps can leave a
stored task without one (docs/architecture.md, "The enqueue gap"): dying after the send
leaves a message without a task, which workers drop after a grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from stratoq.adapters.limits import BucketStore
from stratoq.adapters.store import TaskStore
from stratoq.adapters.transport import (
    Outgoing,
    SqsTransport,
    TaskMessage,
    limits_of,
    outgoing_for,
)
from stratoq.core.clock import to_ms
from stratoq.core.errors import (
    EnqueueError,
    InvalidRequestError,
    PayloadTooLargeError,
    UnknownQueueError,
)
from stratoq.core.ids import new_task_id
from stratoq.core.limits import NO_LIMITS, SHORT_WAIT_MS, Rate, plan
from stratoq.core.models import (
    MAX_PAYLOAD_BYTES,
    Task,
    TaskRequest,
    TaskStatus,
    payload_size,
    utcnow,
)
from stratoq.core.policy import WaitReason
from stratoq.core.registry import apply_options, deployment_defaults
from stratoq.core.settings import Settings
from stratoq.observability import tracing
from stratoq.observability.metrics import Metrics
from stratoq.services.debounce import Debouncer
from stratoq.services.events import Events

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
        events: Events | None = None,
    ) -> None:
        self.events = events or Events(store)
        self.store = store
        self.transport = transport
        self.settings = settings
        self.defaults = deployment_defaults(settings)
        self.metrics = metrics if metrics is not None else Metrics()
        self.buckets = BucketStore(store.client, store.table)
        self.debouncer = Debouncer(store, self.metrics, self.events)

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
        _keys_have_limits(request)
        _debounce_needs_both(request)
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
        if request.debounce_seconds is not None:
            # A debounced task waits out its window: a later one of its key supersedes it.
            window_ends = now + timedelta(seconds=request.debounce_seconds)
            due = window_ends if due is None else max(due, window_ends)
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
            concurrency_key=request.concurrency_key,
            max_concurrency=request.max_concurrency,
            rate_limit=request.rate_limit,
            rate_limit_key=request.rate_limit_key,
            debounce_key=request.debounce_key,
            debounce_seconds=request.debounce_seconds,
            created_at=now,
            scheduled_for=due,
            next_attempt_at=due,
        )

    def enqueue(self, request: TaskRequest, tenant: str = "default") -> Enqueued:
        with tracing.span("stratoq.enqueue", kind="producer") as span:
            enqueued = self._enqueue(request, tenant)
            task = enqueued.task
            tracing.note(span, tracing.task_attributes(task, created=enqueued.created))
            return enqueued

    def _enqueue(self, request: TaskRequest, tenant: str) -> Enqueued:
        task = self.build(request, tenant)
        now = to_ms(task.created_at) or 0
        held = self._holder(task, now)
        if held is not None:
            return Enqueued(held, False)
        sent_ms = self._send([task], first=True, paid=self._take_tokens([task]))
        stored, created = self.store.create(task, now, _window_ms(request))
        if created:
            self._late(sent_ms, [stored])
            self.metrics.tasks_enqueued([stored])
            self.events.queued([stored])
            if stored.debounce_key is not None:
                self.debouncer.stored([stored])
        else:
            # A concurrent first request took the key between our read and our write:
            # our message is an orphan, which workers drop after the grace period.
            self._resend(stored)
        return Enqueued(stored, created)

    def _holder(self, task: Task, now_ms: int) -> Task | None:
        """The task a keyed request's key already names (re-sent if it never started),
        read before anything is sent: a repeat must not leave an orphan message."""
        if task.idempotency_key is None:
            return None
        held = self.store.holder(task.tenant, task.idempotency_key, now_ms)
        if held is not None:
            self._resend(held)
        return held

    def _resend(self, task: Task) -> None:
        if task.status in (TaskStatus.QUEUED, TaskStatus.SCHEDULED):
            # A repeat of a request whose task never started may be the caller retrying
            # after that task's message was lost: sending again is safe (claims are
            # deduplicated).
            self._send([task])

    def enqueue_many(
        self, requests: Sequence[TaskRequest], tenant: str = "default"
    ) -> list[Enqueued]:
        """Enqueue in bulk: batched writes for plain tasks, one by one with idempotency keys.

        Results are in request order. Entries sharing a key (explicit or `unique`) make
        one task: the first entry decides it, later ones answer it with `created=False`,
        as a key stored by an earlier request does.
        """
        with tracing.span("stratoq.enqueue", {"stratoq.count": len(requests)}, "producer"):
            return self._enqueue_many(requests, tenant)

    def _enqueue_many(self, requests: Sequence[TaskRequest], tenant: str) -> list[Enqueued]:
        tasks = [self.build(r, tenant) for r in requests]
        plain = [t for t in tasks if t.idempotency_key is None]
        # Keys already held answer their tasks and send nothing new (see `_holder`).
        by_key: dict[str, Task] = {}
        firsts: dict[str, Task] = {}
        for t in tasks:
            key = t.idempotency_key
            if key is None or key in by_key or key in firsts:
                continue
            held = self.store.holder(t.tenant, key, to_ms(t.created_at) or 0)
            if held is not None:
                by_key[key] = held
            else:
                firsts[key] = t
        # One message per task this call may store, before any is stored.
        fresh = [*plain, *firsts.values()]
        sent_ms = self._send(fresh, first=True, paid=self._take_tokens(fresh))
        self.store.create_many(plain)
        results: dict[str, Enqueued] = {t.id: Enqueued(t, True) for t in plain}
        late = list(plain)
        runnable = (TaskStatus.QUEUED, TaskStatus.SCHEDULED)
        to_send = [t for t in by_key.values() if t.status in runnable]
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
            if created:
                late.append(stored)
            elif stored.status in runnable:
                to_send.append(stored)
        self._late(sent_ms, late)
        self._send(to_send)
        self.events.queued(late)
        self.metrics.tasks_enqueued(r.task for r in results.values() if r.created)
        debounced = [done.task for t in tasks if (done := results[t.id]).created and t.debounce_key]
        if debounced:
            self.debouncer.stored(debounced)
        return [results[t.id] for t in tasks]

    def send_new(self, tasks: Sequence[Task]) -> None:
        """Send the messages of tasks the caller stores next (workflow nodes): as an
        enqueue's, they carry the send time, so a worker that finds no record yet waits
        for it instead of dropping the message ("The enqueue gap")."""
        self._send(tasks, first=True)
        self.metrics.tasks_enqueued(tasks)

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

    def _late(self, sent_ms: int, tasks: Sequence[Task]) -> None:
        """Send again if storing took so long that workers may have dropped the first
        messages as orphans (past half the grace period: a write retried under
        throttling); a duplicate is harmless, a stored task without a message is not."""
        now = to_ms(utcnow()) or 0
        if tasks and now - sent_ms > self.settings.orphan_grace_seconds * 500:
            logger.warning(
                "storing tasks outlasted half the orphan grace period; sending again",
                extra={"count": len(tasks), "elapsed_ms": now - sent_ms},
            )
            self._send(tasks)

    def _take_tokens(self, tasks: Sequence[Task]) -> dict[str, int]:
        """Take the rate-limit tokens of the tasks that carry their own rate limit and run
        now, before their messages go: task id -> when its token is its own (epoch ms).
        One write per bucket for the lot; each message is then delayed until its token
        (less than a second early: the worker sleeps out the rest; `waiting_for` says
        so), so waiting tasks are never handed back and forth. A bucket that cannot be
        written leaves its tasks to take tokens at the worker."""
        groups: dict[tuple[str, Rate], list[Task]] = {}
        for t in tasks:
            limits = limits_of(t)
            if limits is None or limits.rate_limit is None or t.next_attempt_at is not None:
                continue
            for scope, rate in plan(t.tenant, t.name, t.queue, limits, NO_LIMITS).buckets:
                groups.setdefault((scope, rate), []).append(t)
        paid: dict[str, int] = {}
        now = to_ms(utcnow()) or 0
        for (scope, rate), group in groups.items():
            try:
                dues = self.buckets.reserve_many(scope, rate, now, len(group))
            except Exception:
                # Throttled, or a role that may not update the tasks table (the
                # scheduler's, the bridges'): the worker takes the tokens instead.
                logger.warning("taking rate-limit tokens failed", extra={"scope": scope})
                continue
            for t, due in zip(group, dues or [], strict=False):
                paid[t.id] = max(due, paid.get(t.id, due))
        for t in tasks:
            if paid.get(t.id, 0) - now > SHORT_WAIT_MS:
                t.waiting_for = WaitReason.RATE_LIMITED.value
        return paid

    def _send(
        self, tasks: Sequence[Task], *, first: bool = False, paid: dict[str, int] | None = None
    ) -> int:
        """Send the tasks' messages; the time sent (epoch ms). `first`: an enqueue's
        messages, sent before their tasks are stored, so they carry that time. `paid`:
        tasks whose rate-limit tokens are taken, delayed until them."""
        paid = paid or {}
        now = to_ms(utcnow()) or 0
        if not tasks:
            return now
        # The current span's context (the enqueue's): the worker's spans continue it.
        trace = tracing.traceparent()
        messages: list[Outgoing] = [
            outgoing_for(
                # Each priority has its own SQS queue where one is configured.
                self.transport.route(t.queue, t.priority.value),
                TaskMessage(
                    t.id,
                    t.tenant,
                    name=t.name,
                    enqueued_ms=now if first else None,
                    limits=limits_of(t),
                    rate_paid_ms=paid.get(t.id),
                    trace=trace,
                ),
                _send_at(paid.get(t.id), t),
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
        return now


def _send_at(paid_ms: int | None, task: Task) -> int | None:
    """When a task's message is due: its rate-limit token's time (`outgoing_for` sends
    it less than a second early, for the worker to sleep out), else the task's own."""
    return to_ms(task.next_attempt_at) if paid_ms is None else paid_ms


def _keys_have_limits(request: TaskRequest) -> None:
    """A key names whose tasks a limit counts: without the limit (the request's or the
    task's options') it would limit nothing, surely not what the caller meant."""
    if request.concurrency_key is not None and request.max_concurrency is None:
        raise InvalidRequestError(
            "concurrency_key needs max_concurrency (in the request or the task's options)",
            field="max_concurrency",
        )
    if request.rate_limit_key is not None and request.rate_limit is None:
        raise InvalidRequestError(
            "rate_limit_key needs rate_limit (in the request or the task's options)",
            field="rate_limit",
        )


def _debounce_needs_both(request: TaskRequest) -> None:
    """A debounce key without a window (the request's or the task's option) would
    delay nothing, and a window without a key would supersede nothing."""
    if request.debounce_key is not None and request.debounce_seconds is None:
        raise InvalidRequestError(
            "debounce_key needs debounce_seconds (in the request or the task's options)",
            field="debounce_seconds",
        )
    if request.debounce_seconds is not None and request.debounce_key is None:
        raise InvalidRequestError(
            "debounce_seconds needs debounce_key: the key names the tasks that supersede "
            "each other",
            field="debounce_key",
        )


def _window_ms(request: TaskRequest) -> int | None:
    """The request's own idempotency window in ms (None: the store's default)."""
    seconds = request.idempotency_window_seconds
    return None if seconds is None else seconds * 1000
