"""Typed errors. Handlers raise `Retry` and `Fail`; the rest are raised by stratoq."""

from __future__ import annotations


class StratoqError(Exception):
    """Base of every error stratoq raises on purpose."""


class ConfigError(StratoqError):
    """A setting is missing or malformed; the message names it."""


class UnknownQueueError(StratoqError):
    """A task names a queue this deployment does not have."""


class NotFoundError(StratoqError):
    """The thing asked for does not exist (or belongs to another tenant)."""


class TaskNotFoundError(NotFoundError):
    """No task with that id (for this tenant)."""


class KeyNotFoundError(NotFoundError):
    """No API key with that id."""


class InvalidRequestError(StratoqError):
    """A request is well-formed but asks for something impossible; the message says why."""


class PayloadTooLargeError(InvalidRequestError):
    """A task's payload is over the per-task limit (the API answers 413)."""


class InvalidStateError(StratoqError):
    """The task's status does not allow the operation (e.g. cancelling a finished task)."""


class EnqueueError(StratoqError):
    """The task could not be handed to SQS; nothing was enqueued."""


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
