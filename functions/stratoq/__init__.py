"""stratoq: a serverless, distributed task queue on AWS.

Define tasks with `@task("name")`; raise `Retry(delay)` or `Fail(reason)` inside them;
hold a distributed lock with `with stratoq.lock("name"):`.
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
)
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.registry import TaskContext, context, task
from stratoq.core.version import __version__
from stratoq.sdk.client import Client

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
    "TaskRequest",
    "TaskStatus",
    "__version__",
    "context",
    "lock",
    "task",
]
