"""Routes of `/v1/tasks`: enqueue (one or a batch), read, list, cancel, retry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

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
from stratoq.core.models import TaskStatus, utcnow
from stratoq.core.policy import recheck_delay
from stratoq.services import dlq

if TYPE_CHECKING:
    from stratoq.services.app import Services


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
        """Run the caller's failed tasks again (newest first, up to `max_tasks`; optional
        `name`)."""
        tenant = caller("tasks:write")
        req = request or RetryFailedRequest()
        report = dlq.retry_failed(services.enqueuer, tenant, req.name, req.max_tasks)
        return answer(202, RetryResult.model_validate(report.as_dict()))

    @app.get("/v1/tasks", responses=responses({200: ("a page", TaskPage)}, 400))
    def list_tasks(
        status: Annotated[TaskStatus | None, Query()] = None,
        name: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        next_token: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Response[str]:
        """A page of the caller's tasks, newest first; `next_token` fetches the next page."""
        tenant = caller("tasks:read")
        try:
            tasks, token = services.store.list_tasks(tenant, status, name, limit, next_token)
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
        "/v1/tasks/<task_id>/cancel", responses=responses({200: ("cancelled", Task)}, 404, 409)
    )
    def cancel_task(task_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        """Cancel a task that has not started (409 if it is running or finished)."""
        tenant = caller("tasks:write")
        task = services.store.cancel(task_id, tenant, to_ms(utcnow()) or 0)
        services.metrics.task_cancelled(task)
        if task.workflow_id is not None:
            # Its dependents can never run now; should this fail, the cancelled task's
            # message still reaches a worker, which tells the workflow again.
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
