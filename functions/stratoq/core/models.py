"""Pydantic models at the edges: what users send (TaskRequest) and what they get (Task)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stratoq.core.clock import AwareTimestamp, Timestamp
from stratoq.core.limits import MAX_CONCURRENCY, MAX_KEY_LENGTH, check_rate

# SQS DelaySeconds tops out at 15 minutes; longer waits hop (see worker.py).
MAX_SQS_DELAY = 900
# One year: far enough for any real schedule, near enough to catch unit mistakes (ms vs s).
MAX_DELAY_SECONDS = 366 * 24 * 3600
MAX_TIMEOUT_SECONDS = 12 * 3600
MAX_ATTEMPTS = 100
# Per task, as compact JSON: the stored item (encrypted payload, state, error history)
# must stay under DynamoDB's 400 KB item limit.
MAX_PAYLOAD_BYTES = 256 * 1024
# Bounds of a per-request idempotency window: at least a second (shorter is no window),
# at most a week (records are kept for their window; far longer would outlive tasks).
MIN_IDEMPOTENCY_WINDOW = 1
MAX_IDEMPOTENCY_WINDOW = 7 * 24 * 3600
# Prefix of the idempotency keys `unique: true` derives (see TaskRequest.unique_key).
UNIQUE_KEY_PREFIX = "unique:"
# Messages one dead-letter redrive moves: by default, and at most (services/dlq.py).
REDRIVE_DEFAULT_MESSAGES = 1000
REDRIVE_MAX_MESSAGES = 10_000
# A debounce window (docs/flow-control.md#debounce): at least a second, at most a day.
MIN_DEBOUNCE_SECONDS = 1
MAX_DEBOUNCE_SECONDS = 24 * 3600

TASK_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"
TaskName = Annotated[str, Field(pattern=TASK_NAME_PATTERN)]
QUEUE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
QueueName = Annotated[str, Field(pattern=QUEUE_PATTERN)]


class TaskStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})
# A worker may start a task in these states (once it is due).
RUNNABLE_STATUSES = frozenset({TaskStatus.SCHEDULED, TaskStatus.QUEUED, TaskStatus.RETRYING})


class Priority(StrEnum):
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


class Backoff(BaseModel):
    """Exponential backoff between attempts: base * 2**(attempt-1), capped, with jitter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_seconds: float = Field(default=2.0, ge=0, le=3600)
    max_seconds: float = Field(default=600.0, ge=0, le=MAX_TIMEOUT_SECONDS)
    jitter: bool = True


class TaskRequest(BaseModel):
    """A task to enqueue. Only `name` is required."""

    model_config = ConfigDict(extra="forbid")

    name: TaskName
    payload: Any = None
    queue: QueueName = "default"
    priority: Priority = Priority.DEFAULT
    delay_seconds: int | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS)
    run_at: AwareTimestamp | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    backoff: Backoff | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    # Derive the idempotency key from name + payload (see `unique_key`).
    unique: bool = False
    # How long the key holds (default: the deployment's, 24 h); needs a key or `unique`.
    idempotency_window_seconds: int | None = Field(
        default=None, ge=MIN_IDEMPOTENCY_WINDOW, le=MAX_IDEMPOTENCY_WINDOW
    )
    lock_key: str | None = Field(default=None, min_length=1, max_length=256)
    # Flow control (docs/flow-control.md): at most `max_concurrency` tasks of the
    # tenant with this `concurrency_key` (without a key: of this name) run at once, and
    # tasks with this `rate_limit_key` (without a key: of this name) start at most at
    # `rate_limit` ("10/s", "60/m", "1000/h", "5/d"). Waiting spends no attempt.
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
    max_concurrency: int | None = Field(default=None, ge=1, le=MAX_CONCURRENCY)
    rate_limit: str | None = Field(default=None, examples=["10/s", "1000/h"])
    rate_limit_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
    # Debounce (docs/flow-control.md#debounce): of the tenant's tasks enqueued with this
    # key, each supersedes the one before it (cancelled unless it started), and each
    # waits `debounce_seconds` after its enqueue: only the last of a burst runs.
    debounce_key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
    debounce_seconds: int | None = Field(
        default=None, ge=MIN_DEBOUNCE_SECONDS, le=MAX_DEBOUNCE_SECONDS
    )
    # Where the API checks names (a deployment that knows its tasks, the dev stack): take
    # a name no registered task has, for producers deployed ahead of their workers.
    allow_unknown_name: bool = False

    # Field validators (not a model validator) so that the error names the field at fault.
    @field_validator("unique")
    @classmethod
    def _unique_or_key(cls, unique: bool, info: ValidationInfo) -> bool:
        if unique and info.data.get("idempotency_key") is not None:
            raise ValueError(
                "give either unique or idempotency_key, not both: unique derives the key"
            )
        return unique

    @field_validator("idempotency_window_seconds")
    @classmethod
    def _window_needs_a_key(cls, window: int | None, info: ValidationInfo) -> int | None:
        if (
            window is not None
            and info.data.get("idempotency_key") is None
            and not info.data.get("unique")
        ):
            raise ValueError("a window needs idempotency_key or unique: true")
        return window

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, rate: str | None) -> str | None:
        return check_rate(rate)

    @model_validator(mode="after")
    def _one_kind_of_delay(self) -> TaskRequest:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give either delay_seconds or run_at, not both")
        return self

    def unique_key(self) -> str:
        """The idempotency key `unique: true` uses: a hash of name and canonical payload.

        The payload is canonical JSON (keys sorted, no spaces), so `{"a": 1, "b": 2}` and
        `{"b": 2, "a": 1}` are the same task. Only name and payload count: the same work
        requested on another queue, priority or delay is still the same work.
        """
        canonical = json.dumps(
            [self.name, self.payload], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return UNIQUE_KEY_PREFIX + hashlib.sha256(canonical.encode()).hexdigest()

    def effective_idempotency_key(self) -> str | None:
        """The explicit key, else the derived one when `unique`, else None."""
        if self.idempotency_key is not None:
            return self.idempotency_key
        return self.unique_key() if self.unique else None


class AttemptError(BaseModel):
    """What went wrong in one attempt."""

    attempt: int
    # error | timeout | lost | unknown_task | fail | retry | invalid_payload | cancelled
    kind: str
    message: str
    at: Timestamp


# A progress report's message, at most (`stratoq.context().progress(value, message)`).
PROGRESS_MESSAGE_MAX = 256


class Progress(BaseModel):
    """A running task's latest progress report, as its handler made it."""

    value: float = Field(ge=0, le=1, description="the fraction done, 0 to 1")
    message: str | None = Field(default=None, max_length=PROGRESS_MESSAGE_MAX)
    at: Timestamp = Field(description="when the handler reported it")


class Task(BaseModel):
    """A task as stored and as the API shows it.

    A final task (succeeded, failed, cancelled) has no `error` and no `next_attempt_at`:
    those describe a retry still to come; every attempt's error stays in `errors`.
    """

    id: str
    tenant: str = Field(default="default", exclude=True)
    name: str
    status: TaskStatus
    queue: str = "default"
    priority: Priority = Priority.DEFAULT
    payload: Any = None
    result: Any = None
    error: str | None = Field(
        default=None,
        description="The last attempt's error while the task waits to run again; null once "
        "it is final (every attempt's error is in `errors`).",
    )
    errors: list[AttemptError] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int
    timeout_seconds: int
    backoff: Backoff = Field(default_factory=Backoff)
    idempotency_key: str | None = None
    lock_key: str | None = None
    concurrency_key: str | None = None
    max_concurrency: int | None = None
    rate_limit: str | None = None
    rate_limit_key: str | None = None
    debounce_key: str | None = Field(
        default=None,
        description="Its debounce key: a later task of the tenant with the same key "
        "supersedes it (it ends `cancelled`, the reason in `errors`) unless it started.",
    )
    debounce_seconds: int | None = Field(
        default=None,
        description="Its debounce window: it became due this long after "
        "its enqueue (or at its own later time).",
    )
    waiting_for: str | None = Field(
        default=None,
        description="Why a task that is due has not started: `concurrency` (no free slot "
        "of its concurrency limits) or `rate_limited` (waiting for its rate limit's "
        "token); null once it starts, or when it waits for nothing.",
    )
    created_at: Timestamp
    scheduled_for: Timestamp | None = None
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    next_attempt_at: Timestamp | None = Field(
        default=None, description="When a `retrying` task runs again; null once it is final."
    )
    progress: Progress | None = Field(
        default=None,
        description="The latest progress its handler reported (any attempt's; `at` says "
        "when), written at most about once a second; null if it never reported.",
    )
    cancel_requested_at: Timestamp | None = Field(
        default=None,
        description="When a cancel of the task was asked for while it ran: the running "
        "attempt is stopped within seconds and the task ends `cancelled`.",
    )
    workflow_id: str | None = Field(
        default=None, description="The workflow this task is a node of (null: none)."
    )
    workflow_node: str | None = Field(
        default=None, description="Its node's name in that workflow (null: none)."
    )
    parent_id: str | None = Field(
        default=None,
        description="The task whose handler spawned this one (`context().spawn`); null: none.",
    )
    # A workflow node's links, kept on its task so that the worker learns them from the
    # claim: the numbers of the nodes that depend on it, and how many it depends on.
    workflow_children: list[int] = Field(default_factory=list, exclude=True)
    workflow_deps: int = Field(default=0, exclude=True)
    holder: str | None = Field(
        default=None,
        description="The worker that holds the task's lease while it runs, and the last "
        "one that held it after: `host/pid/slot` for a container worker, the invocation's "
        "request id for a Lambda worker; null if no attempt has started.",
    )

    @model_validator(mode="after")
    def _final_waits_for_nothing(self) -> Task:
        # Items that older code finished kept the last retry's error and time (complete,
        # fail and cancel now remove them): read back, a final task still shows neither.
        if self.status.final:
            self.error = None
            self.next_attempt_at = None
        return self


def payload_size(payload: Any) -> int:
    """Bytes of a payload as compact JSON (what the limit counts)."""
    return len(json.dumps(payload, separators=(",", ":")).encode())


def utcnow() -> datetime:
    return datetime.now(UTC)
