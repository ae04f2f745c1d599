"""Routes of `/v1/tasks`: enqueue (one or a batch), read, list, cancel (one or by
filter), retry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import AwareDatetime

from stratoq.api.common import (
    RESOLVING,
    Caller,
    answer,
    check_name,
    check_payload,
    with_task_defaults,
)
from stratoq.api.contract import (
    WAIT_QUERY,
    BatchRequest,
    CancelRequest,
    CancelResult,
    RetryFailedRequest,
    RetryResult,
    Task,
    TaskBatch,
    TaskPage,
    TaskRequest,
    responses,
)
from stratoq.core.clock import to_ms
from stratoq.core.errors import InvalidRequestError, TaskNotFoundError
from stratoq.core.models import QUEUE_PATTERN, TaskStatus, utcnow
from stratoq.core.policy import recheck_delay
from stratoq.services import cancel, dlq

if TYPE_CHECKING:
    from datetime import datetime

    from stratoq.services.app import Services

_AFTER = "only tasks created after this time (RFC 3339, e.g. 2030-01-01T09:00:00Z)"
_BEFORE = "only tasks created before this time (RFC 3339)"


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the task routes to `app`, answering from `services`."""

    @app.post(
        "/v1/tasks",
        responses=responses(
            {202: ("enqueued", Task), 200: ("the idempotency key's existing task", Task)},
            400,
            413,
            503,
        ),
    )
    def enqueue(request: TaskRequest) -> Response[str]:
        """Enqueue a task. A repeated idempotency key answers 200 with the first task.

        Fields left out take the task's options (`@task(queue=..., ...)`), then the
        deployment's defaults, where the API has loaded the tasks module."""
        tenant = caller("tasks:write")
        check_payload(request)
        check_name(request, services)
        request = with_task_defaults(request, services)
        result = services.enqueuer.enqueue(request, tenant)
        return answer(202 if result.created else 200, result.task)

    @app.post("/v1/tasks/batch", responses=responses({202: ("enqueued", TaskBatch)}, 400, 413, 503))
    def enqueue_batch(batch: BatchRequest) -> Response[str]:
        """Enqueue up to 100 tasks at once."""
        tenant = caller("tasks:write")
        requests = []
        for i, request in enumerate(batch.tasks):
            check_payload(request, f"tasks[{i}].payload")
            check_name(request, services, f"tasks[{i}].name")
            requests.append(with_task_defaults(request, services, f"tasks[{i}].payload"))
        results = services.enqueuer.enqueue_many(requests, tenant)
        return answer(
            202, TaskBatch(tasks=[r.task for r in results], created=[r.created for r in results])
        )

    @app.post("/v1/tasks/retry", responses=responses({202: ("requeued", RetryResult)}, 400, 503))
    def retry_failed(request: RetryFailedRequest | None = None) -> Response[str]:
        """Run the caller's failed tasks that match every filter given again (newest
        first, up to `max_tasks`): attempts reset, as `POST /v1/tasks/{task_id}/retry`
        does. The answer counts them; call again while `more`."""
        tenant = caller("tasks:write")
        req = request or RetryFailedRequest()
        after, before = time_range(req.created_after, req.created_before)
        which = dlq.FailedFilter(req.name, req.queue, after, before)
        report = dlq.retry_failed(services.enqueuer, tenant, which, req.max_tasks)
        return answer(202, RetryResult.model_validate(report.as_dict()))

    @app.get("/v1/tasks", responses=responses({200: ("a page", TaskPage)}, 400))
    def list_tasks(
        status: Annotated[TaskStatus | None, Query()] = None,
        name: Annotated[str | None, Query(max_length=128)] = None,
        queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
        created_after: Annotated[AwareDatetime | None, Query(description=_AFTER)] = None,
        created_before: Annotated[AwareDatetime | None, Query(description=_BEFORE)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        next_token: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Response[str]:
        """A page of the caller's tasks that match every filter given, newest first.

        A page may hold fewer than `limit` tasks, even none, while `next_token` says
        there are more (filters are applied to what each page reads); pass the token
        back with the same filters for the next page. The time range is read from the
        index directly: a narrow range is cheap however many tasks there are."""
        tenant = caller("tasks:read")
        after, before = time_range(created_after, created_before)
        try:
            tasks, token = services.store.list_tasks(
                tenant,
                status,
                name,
                limit,
                next_token,
                before,
                queue=queue,
                created_after_ms=after,
            )
        except ValueError as exc:
            raise InvalidRequestError(str(exc), field="next_token") from None
        return answer(200, TaskPage(tasks=tasks, next_token=token))

    @app.get("/v1/tasks/<task_id>", responses=responses({200: ("the task", Task)}, 404))
    def get_task(
        task_id: Annotated[str, Path(max_length=64)],
        wait: Annotated[float, Query(**WAIT_QUERY)] = 0,
    ) -> Response[str]:
        """A task. With `wait`, the answer waits up to that many seconds for the task to
        end (see `WaitSeconds`); another tenant's task is a 404 at once."""
        tenant = caller("tasks:read")
        task = _read(task_id, tenant)
        if wait > 0 and not task.status.final:
            # The wait reads no request state: other requests go on meanwhile.
            with RESOLVING.stepped_aside(app):
                task = _wait(task, tenant, wait)
        return answer(200, task)

    def _read(task_id: str, tenant: str) -> Task:
        task = services.store.get(task_id, tenant)
        if task is None:
            raise TaskNotFoundError(f"no task {task_id}")
        return task

    def _wait(task: Task, tenant: str, seconds: float) -> Task:
        started = time.monotonic()
        deadline = started + seconds
        while not task.status.final:
            pause = recheck_delay(started, time.monotonic(), deadline)
            if pause is None:
                break
            time.sleep(pause)
            task = _read(task.id, tenant)
        return task

    @app.post(
        "/v1/tasks/cancel", responses=responses({200: ("what was cancelled", CancelResult)}, 400)
    )
    def cancel_tasks(request: CancelRequest) -> Response[str]:
        """Cancel the caller's tasks that match every filter given (newest first, up to
        `max_tasks`): those not started end `cancelled` at once, running ones are asked
        to stop (see `POST /v1/tasks/{task_id}/cancel`); finished ones are left alone."""
        tenant = caller("tasks:write")
        which = _filter(request)
        store, metrics = services.store, services.metrics
        report = cancel.cancel_matching(
            store, metrics, tenant, which, request.max_tasks, events=services.task_events
        )
        return answer(200, CancelResult.model_validate(report.as_dict()))

    @app.post(
        "/v1/tasks/<task_id>/cancel", responses=responses({200: ("cancelled", Task)}, 404, 409)
    )
    def cancel_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        """Cancel a task. One not started ends `cancelled` at once. A running one gets
        `cancel_requested_at`: its attempt is stopped within seconds and the task ends
        `cancelled` (its attempt in `errors`, kind `cancelled`; no retry). 409 if it has
        already finished."""
        tenant = caller("tasks:write")
        task = cancel.cancel_task(
            services.store, services.metrics, task_id, tenant, events=services.task_events
        )
        if task.workflow_id is not None and task.status is TaskStatus.CANCELLED:
            # Its dependents can never run now; should this fail, the cancelled task's
            # message still reaches a worker, which tells the workflow again. (A running
            # node ends cancelled at its worker, which tells the workflow then.)
            services.workflows.ended(task)
        return answer(200, task)

    @app.post(
        "/v1/tasks/<task_id>/retry", responses=responses({202: ("queued", Task)}, 404, 409, 503)
    )
    def retry_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        """Run a failed or cancelled task again, its attempts reset (409 otherwise).

        A `queued` task that never started has its message sent again (for a task whose
        message was lost on the way to SQS; a duplicate message is harmless).
        """
        tenant = caller("tasks:write")
        task = services.store.requeue(task_id, tenant, to_ms(utcnow()) or 0)
        services.enqueuer.send_task(task)
        return answer(202, task)


def _filter(request: CancelRequest) -> cancel.CancelFilter:
    """The bulk cancel's filter; 400 naming the field for one that cannot match."""
    fields = ("queue", "name", "status", "created_before")
    if all(getattr(request, f) is None for f in fields):
        raise InvalidRequestError(
            "name at least one of queue, name, status, created_before: an empty filter "
            "would cancel every task",
            field="body",
        )
    try:
        return cancel.CancelFilter(
            request.queue, request.name, request.status, request.created_before
        )
    except ValueError as exc:
        raise InvalidRequestError(str(exc), field="status") from None


def time_range(after: datetime | None, before: datetime | None) -> tuple[int | None, int | None]:
    """The creation-time filter in epoch ms; 400 naming `created_after` for a range that
    cannot hold a task."""
    lo, hi = to_ms(after), to_ms(before)
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidRequestError(
            "created_after must be earlier than created_before", field="created_after"
        )
    return lo, hi
