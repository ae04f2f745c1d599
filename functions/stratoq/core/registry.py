"""Task handlers by name: `@task("name")` registers, `load(module)` imports user code."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from stratoq.core.errors import ConfigError

Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Handler)

_handlers: dict[str, Handler] = {}
_loaded: set[str] = set()


@dataclass(frozen=True)
class TaskContext:
    """What a running handler may want to know about its task (see `context()`)."""

    task_id: str
    name: str
    attempt: int
    max_attempts: int
    timeout_seconds: int
    # The lease's fencing token: pass it to your own conditional writes so that a
    # worker whose lease was taken over cannot apply its effect after the new holder.
    fencing_token: str
    # The task's tenant: `stratoq.lock()` scopes lock names to it.
    tenant: str = "default"
    # With a `lock_key`: the fencing token of the task's lock (strictly increasing per
    # lock name). A hold can lapse under a stalled worker; a resource that accepts only
    # writes with a token at least as new as the last it saw stays safe even then.
    lock_token: int | None = None


_current: ContextVar[TaskContext | None] = ContextVar("stratoq_task", default=None)


def task(name: str) -> Callable[[F], F]:
    """Register a function as the handler of tasks named `name`.

    The handler receives the task's payload (any JSON value) and returns a JSON value,
    the task's result. Raise `stratoq.Retry(delay)` to retry, `stratoq.Fail` to stop.
    """

    def register(fn: F) -> F:
        existing = _handlers.get(name)
        if existing is not None and existing is not fn:
            raise ConfigError(f"task {name!r} is registered twice ({existing!r} and {fn!r})")
        _handlers[name] = fn
        return fn

    return register


def get(name: str) -> Handler | None:
    return _handlers.get(name)


def names() -> list[str]:
    return sorted(_handlers)


def load(module: str) -> None:
    """Import the modules (comma-separated) that define the task handlers."""
    for mod in filter(None, (m.strip() for m in module.split(","))):
        if mod in _loaded:
            continue
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(f"cannot import tasks module {mod!r}: {exc}") from exc
        _loaded.add(mod)


def context() -> TaskContext:
    """The context of the task running in this handler; raises outside of one."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("stratoq.context() is only available inside a task handler")
    return ctx


def run_handler(handler: Handler, payload: Any, ctx: TaskContext) -> Any:
    reset = _current.set(ctx)
    try:
        return handler(payload)
    finally:
        _current.reset(reset)
