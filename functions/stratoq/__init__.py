"""stratoq: a serverless, distributed task queue on AWS.

Define tasks with `@task("name")`; raise `Retry(delay)` or `Fail(reason)` inside them.
"""

from stratoq.client import Client
from stratoq.errors import Fail, Retry, StratoqError
from stratoq.models import Task, TaskRequest, TaskStatus
from stratoq.registry import TaskContext, context, task

__all__ = [
    "Client",
    "Fail",
    "Retry",
    "StratoqError",
    "Task",
    "TaskContext",
    "TaskRequest",
    "TaskStatus",
    "context",
    "task",
]
__version__ = "0.1.0"
