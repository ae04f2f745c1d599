"""Task handlers by name: `@task("name")` registers, `load(module)` imports user code.

Each task also has its options (`TaskOptions`: queue, priority, attempts, timeout,
backoff, concurrency and rate limits), defaults that a request's own fields override
(`apply_options`), and, where its handler takes a pydantic model, the model its payload
is validated into (`argument`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratoq.core import payloads
from stratoq.core.errors import ConfigError
from stratoq.core.limits import MAX_CONCURRENCY, check_rate
from stratoq.core.models import (
    MAX_ATTEMPTS,
    MAX_DEBOUNCE_SECONDS,
    MAX_TIMEOUT_SECONDS,
    MIN_DEBOUNCE_SECONDS,
    PROGRESS_MESSAGE_MAX,
    Backoff,
    Priority,
    QueueName,
    TaskRequest,
)
from stratoq.core.settings import Settings
from stratoq.core.workflows import WorkflowRequest

Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Handler)

_handlers: dict[str, Handler] = {}
_options: dict[str, TaskOptions] = {}
# Resolved on first use, not at registration: a model may be defined below its handler.
_models: dict[str, type[BaseModel] | None] = {}
_loaded: set[str] = set()


class TaskOptions(BaseModel):
    """A task's defaults for the request fields of the same names (None: no default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: QueueName | None = None
    priority: Priority | None = None
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    backoff: Backoff | None = None
    max_concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    rate_limit: str | None = None
    # The window of requests that give a `debounce_key` (it debounces nothing alone).
    debounce_seconds: int | None = Field(
        default=None, ge=MIN_DEBOUNCE_SECONDS, le=MAX_DEBOUNCE_SECONDS
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rate: str | None) -> str | None:
        return check_rate(rate)


OPTION_FIELDS = tuple(TaskOptions.model_fields)
NO_OPTIONS = TaskOptions()


def deployment_defaults(settings: Settings) -> TaskOptions:
    """The deployment's own defaults, the last layer under every task's options."""
    return TaskOptions(
        max_attempts=settings.default_max_attempts,
        timeout_seconds=settings.default_timeout_seconds,
    )


def apply_options(request: TaskRequest, *layers: TaskOptions) -> TaskRequest:
    """`request` with its option fields filled: a field the caller set (to a value, not
    null) wins, then the first layer that has the option (the task's options, then the
    deployment's defaults). The fields filled count as set in the copy, so applying the
    same layers again, here or in another process, changes nothing."""
    given = {f for f in request.model_fields_set if getattr(request, f) is not None}
    if request.debounce_key is None:
        # A window is a default for keyed requests only: a task with the option is
        # still enqueued plainly without a key (a window alone is refused).
        given.add("debounce_seconds")
    updates: dict[str, Any] = {}
    for field in OPTION_FIELDS:
        if field in given:
            continue
        value = next((v for v in (getattr(o, field) for o in layers) if v is not None), None)
        if value is not None:
            updates[field] = value
    return request.model_copy(update=updates) if updates else request


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
    # A workflow node's dependencies' results, by node name (docs/workflows.md); empty
    # outside workflows and for nodes without dependencies.
    parent_results: Mapping[str, Any] = dataclass_field(default_factory=dict)

    @property
    def parent_result(self) -> Any:
        """The one dependency's result (a chain's previous step); None unless the node
        has exactly one dependency."""
        if len(self.parent_results) != 1:
            return None
        return next(iter(self.parent_results.values()))

    def spawn(self, name: str, payload: Any = None, **options: Any) -> None:
        """Enqueue a child task (`TaskRequest` options) once this attempt succeeds; the
        child's `parent_id` names this task. Children of an attempt that fails are
        dropped with it; those of a retried attempt are made once (their ids derive
        from this task's id and their order), so spawn the same children in the same
        order on every attempt (docs/workflows.md)."""
        for field in ("debounce_key", "debounce_seconds"):
            if options.get(field) is not None:
                # A child is made by the worker's success write, outside the enqueue
                # that keeps a key's latest task: it could not supersede or be.
                raise ValueError(f"{field}: spawned tasks cannot be debounced")
        self._spawn(TaskRequest(name=name, payload=payload, **options))

    def spawn_workflow(self, workflow: WorkflowRequest) -> None:
        """Submit a sub-workflow once this attempt succeeds, as `spawn` does a task
        (build it with `stratoq.chain`, `group`, `chord` or nodes)."""
        self._spawn(workflow)

    def _spawn(self, child: TaskRequest | WorkflowRequest) -> None:
        children = _children.get()
        if children is None:
            raise RuntimeError("spawn() is only available inside a task handler")
        children.append(child)

    def progress(self, value: float, message: str | None = None) -> None:
        """Report how far the task is: `value` the fraction done, 0 to 1, and an optional
        `message` of up to 256 characters. `GET /v1/tasks/{id}` shows the latest report;
        reports reach the store at most about once a second (a newer one replaces one
        held back), and the attempt's last report is written when the handler ends.
        Raises ValueError for a value outside 0-1 or a longer message. Call it from the
        handler's own thread (a thread it starts has no task context)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"progress value must be a number from 0 to 1, not {value!r}")
        if not 0 <= value <= 1:  # NaN fails this too
            raise ValueError(f"progress value must be from 0 to 1 (a fraction), not {value}")
        if message is not None and len(message) > PROGRESS_MESSAGE_MAX:
            raise ValueError(f"progress message is over {PROGRESS_MESSAGE_MAX} characters")
        report = _reporter.get()
        if report is not None:
            report(float(value), message)

    @property
    def cancelled(self) -> bool:
        """True once a user has cancelled the task while this attempt runs: stop and
        return (or raise); the task ends `cancelled` whatever the handler returns.

        On Lambda the worker checks every few seconds (`policy.CANCEL_CHECK_SECONDS`)
        and, a check after setting this, stops waiting for the handler (it is
        interrupted as a timeout interrupts it). In a poller's slot process the attempt
        is ended at the heartbeat that sees the request, so this stays False there."""
        check = _cancel_check.get()
        return check is not None and check()


_current: ContextVar[TaskContext | None] = ContextVar("stratoq_task", default=None)
# Whether the running attempt's task was cancelled (none bound: never, e.g. slot processes).
_cancel_check: ContextVar[Callable[[], bool] | None] = ContextVar("stratoq_cancel", default=None)
# What the running handler spawned (`TaskContext.spawn`), made after it succeeds.
_children: ContextVar[list[TaskRequest | WorkflowRequest] | None] = ContextVar(
    "stratoq_children", default=None
)
# Where the running handler's progress reports go (none: nowhere, e.g. eager tests).
_reporter: ContextVar[Callable[[float, str | None], None] | None] = ContextVar(
    "stratoq_progress", default=None
)


def task(name: str) -> Callable[[F], F]:
    """Register a function as the handler of tasks named `name` (no options; the
    `stratoq.task` decorator takes them and returns a `TaskFunction`).

    The handler receives the task's payload (any JSON value, or the pydantic model its
    first parameter is annotated with) and returns a JSON value (or a model), the task's
    result. Raise `stratoq.Retry(delay)` to retry, `stratoq.Fail` to stop.
    """

    def decorate(fn: F) -> F:
        register(name, fn)
        return fn

    return decorate


def register(name: str, fn: Handler, options: TaskOptions = NO_OPTIONS) -> None:
    """Make `fn` the handler of tasks named `name`, with `options` as their defaults."""
    existing = _handlers.get(name)
    if existing is not None and existing is not fn:
        raise ConfigError(f"task {name!r} is registered twice ({existing!r} and {fn!r})")
    _handlers[name] = fn
    _options[name] = options
    _models.pop(name, None)


def get(name: str) -> Handler | None:
    return _handlers.get(name)


def options(name: str) -> TaskOptions:
    """The options task `name` was registered with (none for an unknown name)."""
    return _options.get(name, NO_OPTIONS)


def payload_model(name: str) -> type[BaseModel] | None:
    """The model task `name`'s payload is validated into (None: untyped or unknown)."""
    if name not in _models:
        fn = _handlers.get(name)
        _models[name] = None if fn is None else payloads.payload_model(fn)
    return _models[name]


def argument(name: str, payload: Any, field: str = "payload") -> Any:
    """What task `name`'s handler is called with: the payload, validated into the
    handler's model if it takes one (`InvalidPayloadError` naming the fields if not)."""
    model = payload_model(name)
    return payload if model is None else payloads.validate_payload(model, payload, field)


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


@contextmanager
def cancel_check(check: Callable[[], bool]) -> Iterator[None]:
    """Make `TaskContext.cancelled` of handler calls inside this block ask `check`."""
    token = _cancel_check.set(check)
    try:
        yield
    finally:
        _cancel_check.reset(token)


def run_handler(
    handler: Handler,
    payload: Any,
    ctx: TaskContext,
    report: Callable[[float, str | None], None] | None = None,
    children: list[TaskRequest | WorkflowRequest] | None = None,
) -> Any:
    """Call `handler` (with the argument `argument` made) as the task of `ctx`; a model
    it returns comes back as its JSON dump. `ctx.progress(...)` calls `report`, and
    `ctx.spawn(...)` appends to `children` (spawning raises when it is None)."""
    reset = _current.set(ctx)
    reset_report = _reporter.set(report)
    reset_children = _children.set(children)
    try:
        return payloads.result_value(handler(payload))
    finally:
        _children.reset(reset_children)
        _reporter.reset(reset_report)
        _current.reset(reset)
