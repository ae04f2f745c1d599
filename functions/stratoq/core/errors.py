"""Typed errors: the one hierarchy of stratoq, shared by the core, the API and the SDK.

Handlers raise `Retry` and `Fail`; the rest are raised by stratoq. The HTTP API answers
each error with the status `stratoq.api.errors` maps it to, and the SDK raises, for an
error answer, the `ApiError` subclass that is also the core class of that status: so
`except NotFoundError` catches a missing task whether the store or the SDK found it
missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stratoq.core.models import Task


class StratoqError(Exception):
    """Base of every error stratoq raises on purpose.

    `field` names the request field at fault where there is one (the API's
    `errors[].field`), and `detail` what is wrong with it (the message by default).
    """

    def __init__(self, *args: object, field: str | None = None, detail: str | None = None) -> None:
        super().__init__(*args)
        self.field = field
        self.detail = detail


class ConfigError(StratoqError):
    """A setting is missing or malformed; the message names it."""


class UsageError(StratoqError):
    """Bad command-line input; the message says which."""


class DecryptionError(StratoqError):
    """A stored value cannot be decrypted: tampered, moved, or under an unusable key."""


# ----------------------------------------------------------- refused requests
class AccessDeniedError(StratoqError):
    """The caller may not do this: no valid API key, or a key without the right."""


class UnauthorizedError(AccessDeniedError):
    """No API key, or an unknown or revoked one."""


class ForbiddenError(AccessDeniedError):
    """The API key lacks the scope, or the tenant, the operation needs."""


class NotFoundError(StratoqError):
    """The thing asked for does not exist (or belongs to another tenant)."""


class TaskNotFoundError(NotFoundError):
    """No task with that id (for this tenant)."""


class KeyNotFoundError(NotFoundError):
    """No API key with that id."""


class WorkflowNotFoundError(NotFoundError):
    """No workflow with that id (for this tenant)."""


class NoDeadLetterQueueError(NotFoundError):
    """The queue has no redrive policy, so no DLQ to redrive."""


class InvalidRequestError(StratoqError):
    """A request is well-formed but asks for something impossible; the message says why."""


class PayloadTooLargeError(InvalidRequestError):
    """A task's payload is over the per-task limit (the API answers 413)."""


class UnknownTaskNameError(InvalidRequestError):
    """A task names no handler this deployment's workers register (where it checks)."""


class InvalidPayloadError(InvalidRequestError):
    """A typed task's payload does not fit the model its handler takes.

    `problems` lists each `(field, message)`, fields spelled from the request's root
    (`payload.b`, or `tasks[0].payload.b` in a batch); `field` is the first of them.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]]) -> None:
        first = problems[0] if problems else ("payload", message)
        super().__init__(message, field=first[0], detail=first[1])
        self.problems = list(problems) or [first]


class InvalidWorkflowError(InvalidRequestError):
    """A workflow's nodes make no DAG: a repeated name, an unknown dependency or a cycle
    (the message names them, `field` the node at fault)."""


class UnknownQueueError(InvalidRequestError):
    """A task names a queue this deployment does not have."""


class ExpressionError(InvalidRequestError):
    """The schedule expression is not one EventBridge accepts; the message says why."""


class InvalidStateError(StratoqError):
    """The task's status does not allow the operation (e.g. cancelling a finished task)."""


class BackendUnavailableError(StratoqError):
    """AWS (DynamoDB, SQS) refused or did not answer, still after the SDK's retries:
    throttling, a 5xx, a dropped connection. Transient: the API answers 503 with
    Retry-After `retry_after` seconds, and service resumes when AWS does."""

    retry_after = 5


class EnqueueError(BackendUnavailableError):
    """The task could not be handed to SQS; nothing was enqueued."""


# ------------------------------------------------------ what the SDK raises
class ApiError(StratoqError):
    """The API answered with an error. `status`, `message` and `errors` say what.

    The SDK raises the subclass that matches the status (`AuthError`, `NotFound`,
    `Conflict`, `InvalidRequest`, `ServiceUnavailable`), or `ApiError` itself (429,
    other 5xx).
    """

    def __init__(self, status: int, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.errors = errors or []


class AuthError(ApiError, AccessDeniedError):
    """401 (missing/unknown key) or 403 (the key lacks a scope)."""


class NotFound(ApiError, NotFoundError):
    """404: no such task (or it belongs to another tenant)."""


class Conflict(ApiError, InvalidStateError):
    """409: the task's status does not allow the operation."""


class InvalidRequest(ApiError, InvalidRequestError):
    """400, 413 or 422: the request was refused as it is; `errors` names the fields."""


class ServiceUnavailable(ApiError, BackendUnavailableError):
    """503: the service's backend is unavailable for a moment; try again later."""


class WaitTimeout(StratoqError, TimeoutError):
    """`wait` gave up before the task finished."""


class TaskFailed(StratoqError):
    """`TaskHandle.result()` found the task failed or cancelled; `task` is the final task."""

    def __init__(self, task: Task) -> None:
        last = task.errors[-1] if task.errors else None
        why = f": {last.kind}: {last.message}" if last is not None else ""
        super().__init__(f"task {task.id} ({task.name}) {task.status}{why}")
        self.task = task


# ------------------------------------------------------------ task handlers
class Retry(Exception):
    """Raise inside a task handler to retry after `delay` seconds (counts as an attempt).

    Without a delay the task's backoff policy picks one.
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class LockUnavailable(Retry):
    """`stratoq.lock(name, wait=...)` could not take the lock within `wait` seconds.

    A `Retry`, so left uncaught it retries the task after `delay` seconds (derived from
    the holder's remaining hold, jittered). That counts as an attempt on purpose: the
    handler has already run up to this point, and counting keeps a task that can never
    get its lock from looping forever. For whole tasks that must not overlap, use
    `lock_key`, whose waits cost no attempt.
    """

    def __init__(self, name: str, delay: float | None = None) -> None:
        super().__init__(delay, reason=f"lock {name!r} is held by another task")
        self.name = name


class Fail(Exception):
    """Raise inside a task handler to fail the task now, without further attempts."""


class TaskTimeout(BaseException):
    """Raised inside a handler running in the main thread when its time is up.

    A BaseException so that a handler's `except Exception` cannot swallow it.
    """


class TaskCancelled(BaseException):
    """Raised inside a handler when the worker stops waiting for it: its task was
    cancelled and the handler did not stop by itself (see `TaskContext.cancelled`).

    A BaseException so that a handler's `except Exception` cannot swallow it.
    """
