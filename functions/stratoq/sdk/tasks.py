"""Tasks as Python objects: `@stratoq.task` defines one, `.enqueue(...)` sends it.

    @task("add", queue="default", max_attempts=3)
    def add(p: AddIn) -> int:
        return p.a + p.b

    handle = add.enqueue(a=1, b=2)              # or add.enqueue(AddIn(a=1, b=2))
    handle.result(timeout=30)                   # 3, or raises TaskFailed / TimeoutError
    add.with_options(priority="high", delay_seconds=60).enqueue(a=1, b=2)
    add(AddIn(a=1, b=2))                        # a plain call: runs the function here

`.enqueue` uses the client given as `client=`, else the one of an enclosing
`with use_client(obj):`, else `default_client()` (a `Client()` built on first use from
STRATOQ_API_URL/_KEY or the .stratoq/dev.json of `stratoq dev`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from pydantic import BaseModel, ValidationError

from stratoq.core import payloads, registry
from stratoq.core.errors import ConfigError, InvalidRequestError, TaskFailed
from stratoq.core.models import Backoff, Priority, Task, TaskRequest, TaskStatus
from stratoq.core.registry import TaskOptions

__all__ = [
    "TaskClient",
    "TaskFunction",
    "TaskHandle",
    "default_client",
    "task",
    "use_client",
]

P = ParamSpec("P")
R = TypeVar("R")

# Request fields `with_options` may set: every TaskRequest field but what the task
# itself decides (its name) and what each call gives (its payload).
REQUEST_FIELDS = frozenset(TaskRequest.model_fields) - {"name", "payload"}


class TaskClient(Protocol):
    """What `.enqueue` and `TaskHandle` need of a client (`Client` has it, and so may a
    test double such as `stratoq.testing`'s eager runner)."""

    def enqueue_request(self, request: TaskRequest) -> Task: ...

    def get(self, task_id: str) -> Task: ...

    def wait(self, task_id: str, timeout: float) -> Task: ...


_active: ContextVar[TaskClient | None] = ContextVar("stratoq_client", default=None)
_default: list[TaskClient] = []
_default_lock = threading.Lock()


def default_client() -> TaskClient:
    """The client `.enqueue` uses without `client=`: the one of the enclosing
    `use_client` block, else a `Client()` built once per process on first use."""
    active = _active.get()
    if active is not None:
        return active
    with _default_lock:
        if not _default:
            from stratoq.sdk.client import Client

            _default.append(Client())
        return _default[0]


@contextlib.contextmanager
def use_client(client: TaskClient) -> Iterator[TaskClient]:
    """Make `client` the default of `.enqueue` in this block (this thread or task only)."""
    token = _active.set(client)
    try:
        yield client
    finally:
        _active.reset(token)


class TaskHandle:
    """An enqueued task: `.id`, `.get()` its current state, `.result()` its outcome."""

    __slots__ = ("client", "id")

    def __init__(self, task_id: str, client: TaskClient) -> None:
        self.id = task_id
        self.client = client

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    def get(self) -> Task:
        """The task as it is now."""
        return self.client.get(self.id)

    def result(self, timeout: float = 60.0) -> Any:
        """Wait up to `timeout` seconds for the task to end; its result (JSON: a model
        the handler returned comes back as its dump) if it succeeded. Raises `TaskFailed`
        (`.task` is the final task) if it failed or was cancelled, `TimeoutError` if it
        is still going."""
        task = self.client.wait(self.id, timeout=timeout)
        if not task.status.final:
            raise TimeoutError(f"task {self.id} is still {task.status} after {timeout} s")
        if task.status is TaskStatus.SUCCEEDED:
            return task.result
        raise TaskFailed(task)


class TaskFunction(Generic[P, R]):
    """A task handler that can also be enqueued. Calling it calls the function."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str,
        options: TaskOptions,
        request: dict[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.options = options
        self._request = dict(request or {})
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<task {self.name!r} {self.fn.__module__}.{self.fn.__qualname__}>"

    def with_options(self, **request: Any) -> TaskFunction[P, R]:
        """A copy whose `.enqueue` also sends these request fields (queue, priority,
        delay_seconds, run_at, idempotency_key, unique, lock_key, ...), over the task's
        options and any set before."""
        unknown = sorted(set(request) - REQUEST_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(REQUEST_FIELDS))
            raise TypeError(f"with_options() has no field {unknown[0]!r}; fields: {allowed}")
        return TaskFunction(self.fn, self.name, self.options, {**self._request, **request})

    def enqueue(
        self, payload: Any = None, /, *, client: TaskClient | None = None, **fields: Any
    ) -> TaskHandle:
        """Enqueue this task; a handle on it. The payload is either the one argument (a
        JSON value, or a pydantic model) or the keyword arguments (its fields).

        A handler taking a model gets the payload checked here first: a field that does
        not fit raises `InvalidRequestError` naming it (`payload.b`), before any request.
        `client=` picks the client (default: `default_client()`).
        """
        if fields:
            if payload is not None:
                raise TypeError("give the payload or its fields as keywords, not both")
            payload = fields
        request = self.request(payload)
        target = client if client is not None else default_client()
        return TaskHandle(target.enqueue_request(request).id, target)

    def request(self, payload: Any = None) -> TaskRequest:
        """The request `.enqueue(payload)` sends: payload checked, options applied."""
        # The registry's (resolved once) while this function is the registered handler.
        registered = registry.get(self.name) is self.fn
        model = registry.payload_model(self.name) if registered else payloads.payload_model(self.fn)
        if model is not None:
            payload = payloads.to_json(payloads.validate_payload(model, payload))
        elif isinstance(payload, BaseModel):
            payload = payloads.to_json(payload)
        try:
            req = TaskRequest(name=self.name, payload=payload, **self._request)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "request"
            raise InvalidRequestError(f"{field}: {err['msg']}", field=field) from None
        return registry.apply_options(req, self.options)


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...


@overload
def task(
    name: str | None = None,
    /,
    *,
    queue: str | None = None,
    priority: Priority | str | None = None,
    max_attempts: int | None = None,
    timeout_seconds: int | None = None,
    backoff: Backoff | dict[str, Any] | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    debounce_seconds: int | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    name: Any = None,
    /,
    *,
    queue: str | None = None,
    priority: Priority | str | None = None,
    max_attempts: int | None = None,
    timeout_seconds: int | None = None,
    backoff: Backoff | dict[str, Any] | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    debounce_seconds: int | None = None,
) -> Any:
    """Define a task: `@task`, `@task("name")` or `@task("name", queue=..., ...)`.

    The name defaults to the function's. The options (queue, priority, max_attempts,
    timeout_seconds, backoff, max_concurrency, rate_limit, debounce_seconds) are the
    defaults of every request for the task; a request's own fields win.
    `max_concurrency=2`: at most 2 of the tenant's tasks of this name run at once (per
    `concurrency_key` where a request gives one); `rate_limit="10/s"`: at most 10 start
    a second (per `rate_limit_key`).
    `debounce_seconds=30`: the window of requests that give a `debounce_key`
    (`.with_options(debounce_key=...)`): of a key's tasks only the last of a burst runs,
    30 s after it was enqueued (docs/flow-control.md#debounce).
    A handler whose first parameter is annotated with a pydantic model gets its payload
    validated into that model. Returns a `TaskFunction`: call it to run the function,
    `.enqueue(...)` to send it.
    """
    if callable(name):
        return task()(name)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"a task's name is a string, not {type(name).__name__}")
    given = {
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "timeout_seconds": timeout_seconds,
        "backoff": backoff,
        "max_concurrency": max_concurrency,
        "rate_limit": rate_limit,
        "debounce_seconds": debounce_seconds,
    }

    def decorate(fn: Callable[P, R]) -> TaskFunction[P, R]:
        task_name = name or fn.__name__
        try:
            options = TaskOptions.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"task {task_name!r}: option {where}: {err['msg']}") from None
        registry.register(task_name, fn, options)
        return TaskFunction(fn, task_name, options)

    return decorate
