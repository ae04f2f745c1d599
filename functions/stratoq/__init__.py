"""stratoq: a serverless, distributed task queue on AWS.

Define tasks with `@task("name", queue=..., max_attempts=...)`; raise `Retry(delay)` or
`Fail(reason)` inside them; enqueue one with `add.enqueue(a=1, b=2)` and wait with
`.result(timeout=...)`; hold a distributed lock with `with stratoq.lock("name"):`; run
tasks as workflows with `Client().submit_workflow(chain(...) | group(...) | chord(...))`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stratoq.core.version import __version__

if TYPE_CHECKING:
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
    from stratoq.core.workflows import NodeRequest, WorkflowRequest, chain, chord, group
    from stratoq.sdk.client import Client
    from stratoq.sdk.tasks import TaskFunction, TaskHandle, task

# Each public name and the module that defines it. They load on first use (PEP 562), so
# that `import stratoq.<anything>` (every CLI command, every slot process) pays only for
# what it touches: the locks' boto3 alone is 0.4 s of a command's start.
_EXPORTS = {
    "lock": "stratoq.adapters.locks",
    **dict.fromkeys(
        (
            "AccessDeniedError",
            "ApiError",
            "Fail",
            "InvalidRequestError",
            "InvalidStateError",
            "LockUnavailable",
            "NotFoundError",
            "Retry",
            "StratoqError",
            "TaskFailed",
        ),
        "stratoq.core.errors",
    ),
    **dict.fromkeys(("Task", "TaskRequest", "TaskStatus"), "stratoq.core.models"),
    **dict.fromkeys(("TaskContext", "TaskOptions", "context"), "stratoq.core.registry"),
    "Client": "stratoq.sdk.client",
    **dict.fromkeys(
        ("NodeRequest", "WorkflowRequest", "chain", "chord", "group"), "stratoq.core.workflows"
    ),
    **dict.fromkeys(("TaskFunction", "TaskHandle", "task"), "stratoq.sdk.tasks"),
}

__all__ = [
    "AccessDeniedError",
    "ApiError",
    "Client",
    "Fail",
    "InvalidRequestError",
    "InvalidStateError",
    "LockUnavailable",
    "NodeRequest",
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
    "WorkflowRequest",
    "__version__",
    "chain",
    "chord",
    "context",
    "group",
    "lock",
    "task",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stratoq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
