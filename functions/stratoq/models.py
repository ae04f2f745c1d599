"""Pydantic models at the edges: what users send (TaskRequest) and what they get (Task)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# SQS DelaySeconds tops out at 15 minutes; longer waits hop (see worker.py).
MAX_SQS_DELAY = 900
# One year: far enough for any real schedule, near enough to catch unit mistakes (ms vs s).
MAX_DELAY_SECONDS = 366 * 24 * 3600
MAX_TIMEOUT_SECONDS = 12 * 3600
MAX_ATTEMPTS = 100

TaskName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")]
QueueName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


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
    run_at: AwareDatetime | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    backoff: Backoff | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=256)
    lock_key: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _one_kind_of_delay(self) -> TaskRequest:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give either delay_seconds or run_at, not both")
        return self


class AttemptError(BaseModel):
    """What went wrong in one attempt."""

    attempt: int
    kind: str  # error | timeout | lost | unknown_task | fail
    message: str
    at: datetime


class Task(BaseModel):
    """A task as stored and as the API shows it."""

    id: str
    tenant: str = Field(default="default", exclude=True)
    name: str
    status: TaskStatus
    queue: str = "default"
    priority: Priority = Priority.DEFAULT
    payload: Any = None
    result: Any = None
    error: str | None = None
    errors: list[AttemptError] = Field(default_factory=list)
    attempts: int = 0
    max_attempts: int
    timeout_seconds: int
    backoff: Backoff = Field(default_factory=Backoff)
    idempotency_key: str | None = None
    lock_key: str | None = None
    created_at: datetime
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)
