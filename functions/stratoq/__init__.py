"""stratoq: a serverless, distributed task queue on AWS.

Define tasks with `@task("name")`; raise `Retry(delay)` or `Fail(reason)` inside them;
hold a distributed lock with `with stratoq.lock("name"):`.
"""

from stratoq.client import Client
from stratoq.errors import Fail, LockUnavailable, Retry, StratoqError
from stratoq.lock import lock
from stratoq.models import Task, TaskRequest, TaskStatus
from stratoq.registry import TaskContext, context, task

__all__ = [
    "Client",
    "Fail",
    "LockUnavailable",
    "Retry",
    "StratoqError",
    "Task",
    "TaskContext",
    "TaskRequest",
    "TaskStatus",
    "context",
    "lock",
    "task",
]
__version__ = "0.1.0"
