"""The HTTP API's contract: every request and response body, as pydantic models.

Defined once and used three ways: the routes (`stratoq.api`) validate requests and
shape their answers with these models, Powertools generates the OpenAPI document
(`GET /v1/openapi.json`) from them, and the SDK (`stratoq.sdk.client`) parses answers
with them. Task, schedule and workflow bodies are the core's own models (`Task`,
`TaskRequest`, `Schedule`, `ScheduleSpec`, `WorkflowRequest`, `Workflow`), re-exported here.

Every time in an answer is a `Timestamp` (`stratoq.core.clock`, where the core's models
get it too): RFC 3339 in UTC with milliseconds and `Z`, e.g. `2026-12-03T12:00:00.123Z`,
whatever precision the value had; the schema says `date-time`.

The routes build their JSON themselves (`Response[str]`: the status depends on the
outcome), so `responses(...)` declares each route's success answers and the errors it
can give, all as the models below; the schemathesis run in CI
(tests/e2e/test_schemathesis.py) checks that every answer matches what is declared.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stratoq.core.clock import AwareTimestamp, Timestamp
from stratoq.core.limits import MAX_CONCURRENCY, check_rate
from stratoq.core.models import (
    REDRIVE_DEFAULT_MESSAGES,
    REDRIVE_MAX_MESSAGES,
    Priority,
    QueueName,
    Task,
    TaskRequest,
    TaskStatus,
)
from stratoq.core.schedules import Schedule, ScheduleSpec
from stratoq.core.workflows import (
    NodeRequest,
    Workflow,
    WorkflowNode,
    WorkflowPage,
    WorkflowRequest,
)

__all__ = [
    "MAX_BATCH",
    "MAX_WAIT_SECONDS",
    "WAIT_QUERY",
    "BatchRequest",
    "CancelRequest",
    "CancelResult",
    "CreatedKey",
    "Deleted",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "Identity",
    "KeyList",
    "KeyRecord",
    "KeyRequest",
    "LimitEntry",
    "LimitList",
    "LimitsRemoved",
    "LimitsRequest",
    "NodeRequest",
    "OpenApiDocument",
    "PauseResult",
    "QueueCounts",
    "QueueList",
    "RedriveRequest",
    "RedriveResult",
    "RetryFailedRequest",
    "RetryResult",
    "Schedule",
    "ScheduleList",
    "ScheduleSpec",
    "Task",
    "TaskBatch",
    "TaskPage",
    "TaskRequest",
    "Timestamp",
    "Workflow",
    "WorkflowNode",
    "WorkflowPage",
    "WorkflowRequest",
    "responses",
]

MAX_BATCH = 100

# The longest `GET /v1/tasks/{id}?wait=`: well within the API function's 29 s (API
# Gateway's own limit on an integration), with room for the reads around the wait.
MAX_WAIT_SECONDS = 20

# `?wait=` of `GET /v1/tasks/{id}` (a float), defined once: the route declares it with
# these (422 naming `wait` outside 0-20), so the OpenAPI document shows them; the SDK
# caps its slices by MAX_WAIT_SECONDS. Plain values: the SDK imports this module, and
# Powertools stays out of it.
WAIT_QUERY: dict[str, Any] = {
    "ge": 0,
    "le": MAX_WAIT_SECONDS,
    "description": "Seconds to wait for the task to end (0-20): the answer comes as soon "
    "as it is final, or when the time is up with the task as it is then (200 either way: "
    "its `status` tells them apart).",
}


# -------------------------------------------------------------------- requests
class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[TaskRequest] = Field(min_length=1, max_length=MAX_BATCH)


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_messages: int = Field(default=REDRIVE_DEFAULT_MESSAGES, ge=1, le=REDRIVE_MAX_MESSAGES)


class RetryFailedRequest(BaseModel):
    """Which of the caller's failed tasks `POST /v1/tasks/retry` runs again: those
    matching every filter given (none: every failed task)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=128)
    queue: QueueName | None = None
    created_after: AwareTimestamp | None = Field(
        default=None, description="only tasks created after this time (RFC 3339)"
    )
    created_before: AwareTimestamp | None = Field(
        default=None, description="only tasks created before this time (RFC 3339)"
    )
    max_tasks: int = Field(default=100, ge=1, le=1000)


class CancelRequest(BaseModel):
    """Which of the caller's tasks `POST /v1/tasks/cancel` cancels: those matching every
    filter given (at least one)."""

    model_config = ConfigDict(extra="forbid")
    queue: QueueName | None = None
    name: str | None = Field(default=None, max_length=128)
    status: TaskStatus | None = Field(
        default=None, description="scheduled, queued, running or retrying (not a final one)"
    )
    created_before: AwareTimestamp | None = Field(
        default=None, description="only tasks created before this time (RFC 3339)"
    )
    max_tasks: int = Field(default=1000, ge=1, le=10000)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    scopes: list[str] = Field(min_length=1)
    name: str = Field(default="", max_length=128)


class LimitsRequest(BaseModel):
    """The operator's limits of a queue or a task name, for every tenant's tasks."""

    model_config = ConfigDict(extra="forbid")
    max_concurrency: int | None = Field(
        default=None, ge=1, le=MAX_CONCURRENCY, description="at most this many run at once"
    )
    rate_limit: str | None = Field(
        default=None,
        description='at most this many start per second, minute, hour or day: "10/s", '
        '"60/m", "1000/h", "5/d"',
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rate: str | None) -> str | None:
        return check_rate(rate)

    @model_validator(mode="after")
    def _something(self) -> LimitsRequest:
        if self.max_concurrency is None and self.rate_limit is None:
            raise ValueError("give max_concurrency, rate_limit or both (DELETE lifts limits)")
        return self


# ------------------------------------------------------------------- answers
class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error: a sentence, and the fields at fault where there are some."""

    message: str | None
    errors: list[ErrorDetail] = Field(default_factory=list)


class OpenApiDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    openapi: str


class Health(BaseModel):
    status: str
    version: str


class TaskPage(BaseModel):
    tasks: list[Task]
    next_token: str | None


class TaskBatch(BaseModel):
    tasks: list[Task]
    created: list[bool] = Field(
        description="Per entry, in request order: false when an idempotency key (explicit, "
        "`unique`, or repeated within the batch) answered an existing task."
    )


class RedriveResult(BaseModel):
    """What `POST /v1/queues/{queue}/redrive` did, in messages."""

    queue: str
    received: int
    redriven: int = Field(description="failed tasks requeued (attempts reset) and sent")
    resent: int = Field(description="tasks still runnable or running, their message sent")
    dropped: int = Field(description="missing, succeeded or cancelled tasks; malformed bodies")
    left: int = Field(description="sending failed: left in the dead-letter queue")
    more: bool = Field(description="stopped at max_messages or the time budget: call again")


class RetryResult(BaseModel):
    """What `POST /v1/tasks/retry` did."""

    retried: int
    task_ids: list[str]
    more: bool = Field(description="failed tasks remain: call again")


class CancelResult(BaseModel):
    """What `POST /v1/tasks/cancel` did."""

    cancelled: int = Field(description="tasks not started yet: now `cancelled`")
    requested: int = Field(
        description="running tasks asked to stop: each ends `cancelled` within seconds"
    )
    more: bool = Field(description="stopped at max_tasks or the time budget: call again")


class QueueCounts(BaseModel):
    """Approximate message counts of one SQS queue: a logical queue at one priority.

    `dead_letter` is null on a priority queue that shares its logical queue's
    dead-letter queue: that queue's `default` row counts it.
    """

    queue: str
    priority: Priority
    visible: int
    in_flight: int
    delayed: int
    dead_letter: int | None
    paused: bool = Field(
        default=False,
        description="the logical queue is paused: workers hand its tasks back unrun "
        "(every priority row of the queue says so)",
    )


class QueueList(BaseModel):
    queues: list[QueueCounts]
    paused_task_names: list[str] = Field(
        default_factory=list,
        description="task names paused on every queue, sorted",
    )


class PauseResult(BaseModel):
    """What a pause or resume did (`POST /v1/queues/{queue}/pause`, `.../resume`,
    `POST /v1/tasks/names/{name}/pause`, `.../resume`)."""

    kind: Literal["queue", "task_name"]
    name: str
    paused: bool = Field(description="whether it is paused now")
    changed: bool = Field(description="false: it already was (pausing twice is pausing once)")


class Identity(BaseModel):
    """Who the calling key is (`GET /v1/whoami`)."""

    tenant: str
    scopes: list[str] = Field(description="as granted: admin implies every other scope")
    operator: bool = Field(
        description="an admin key of the operator tenant: it may pause queues and task "
        "names, redrive dead letters and manage every tenant's keys"
    )


class LimitEntry(BaseModel):
    """The operator's limits of one queue or task name."""

    kind: Literal["queue", "task_name"]
    name: str
    max_concurrency: int | None
    rate_limit: str | None


class LimitList(BaseModel):
    """Every operator limit (`GET /v1/limits`), queues first, each sorted by name."""

    limits: list[LimitEntry]


class LimitsRemoved(BaseModel):
    kind: Literal["queue", "task_name"]
    name: str
    removed: bool = Field(description="false: it had no limits")


class KeyRecord(BaseModel):
    key_id: str
    tenant: str
    scopes: list[str]
    name: str
    # Stored as epoch seconds; validation turns them into a time, shown as every other.
    created_at: Timestamp
    revoked: bool


class CreatedKey(KeyRecord):
    key: str = Field(description="The API key: shown in this answer only.")


class KeyList(BaseModel):
    keys: list[KeyRecord]


class ScheduleList(BaseModel):
    schedules: list[Schedule]


class Deleted(BaseModel):
    name: str
    deleted: bool


# What every route behind the authorizer can answer besides its own codes.
_ERRORS = {
    401: "missing, unknown or revoked `x-api-key`",
    403: "the key lacks the route's scope",
    422: "a field is invalid or unknown (`errors[].field` names it)",
    429: "this API key is over its request rate",
}
_MORE_ERRORS = {
    400: "the body is not JSON, or a value the API did not issue",
    404: "no such resource (or it belongs to another tenant)",
    409: "the task's (or workflow's) status does not allow the operation",
    413: "the body or a payload is over its size limit",
    503: "SQS did not take the task; nothing was enqueued",
}


def responses(
    ok: dict[int, tuple[str, type[BaseModel]]], *errors: int, public: bool = False
) -> dict[int, Any]:
    """A route's `responses=`: its success answers and the error codes it can give."""
    out: dict[int, Any] = {
        status: {"description": text, "content": {"application/json": {"model": model}}}
        for status, (text, model) in ok.items()
    }
    codes = {} if public else dict(_ERRORS)
    codes.update({code: _MORE_ERRORS[code] for code in errors})
    for code, text in codes.items():
        out[code] = {"description": text, "content": {"application/json": {"model": ErrorBody}}}
    return out
