"""stratoq: a serverless, distributed task queue on AWS.

Define tasks with `@task("name", queue=..., max_attempts=...)`; raise `Retry(delay)` or
`Fail(reason)` inside them; enqueue one with `add.enqueue(a=1, b=2)` and wait with
`.result(timeout=...)`; hold a distributed lock with `with stratoq.lock("name"):`.
"""

from stratoq.adapters.locks import lock
from stratoq.core.errors import (
    AccessDeniedError,
    ApiError,
    Fail,
    InvalidRequestError,
    InvalidStateError,
    LockUnavailable,
    NotFoundError,
    Retry,
    StratoqError,
    TaskFailed,
)
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.registry import TaskContext, TaskOptions, context
from stratoq.core.version import __version__
from stratoq.sdk.client import Client
from stratoq.sdk.tasks import TaskFunction, TaskHandle, task

__all__ = [
    "AccessDeniedError",
    "ApiError",
    "Client",
    "Fail",
    "InvalidRequestError",
    "InvalidStateError",
    "LockUnavailable",
    "NotFoundError",
    "Retry",
    "StratoqError",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskFunction",
    "TaskHandle",
    "TaskOptions",
    "TaskRequest",
    "TaskStatus",
    "__version__",
    "context",
    "lock",
    "task",
]
