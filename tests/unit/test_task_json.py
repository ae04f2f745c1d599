"""How a Task reads as JSON: one time format, and no pending retry once final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from stratoq.api.contract import KeyRecord, Schedule, Task
from stratoq.core.clock import from_ms, rfc3339_ms, to_ms
from stratoq.core.models import TaskStatus


def task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": "t1",
        "name": "echo",
        "status": "succeeded",
        "max_attempts": 5,
        "timeout_seconds": 300,
        "created_at": "2026-12-03T12:00:00.123456Z",
    }
    return Task.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        (datetime(2026, 12, 3, 12, 0, 0, 123999, tzinfo=UTC), "2026-12-03T12:00:00.123Z"),
        (datetime(2026, 12, 3, 12, 0, tzinfo=UTC), "2026-12-03T12:00:00.000Z"),
        (
            datetime(2026, 12, 3, 14, 0, 0, 5000, tzinfo=timezone(timedelta(hours=2))),
            "2026-12-03T12:00:00.005Z",
        ),
        (datetime(2026, 12, 3, 12, 0, 0, 999), "2026-12-03T12:00:00.000Z"),  # naive: UTC
    ],
)
def test_times_are_utc_milliseconds_with_z(moment: datetime, shown: str) -> None:
    assert rfc3339_ms(moment) == shown


def test_a_time_reads_the_same_before_and_after_the_store() -> None:
    moment = datetime(2026, 12, 3, 12, 0, 0, 987654, tzinfo=UTC)
    stored = from_ms(to_ms(moment))
    assert stored is not None
    assert rfc3339_ms(stored) == rfc3339_ms(moment)


def test_every_time_of_a_task_dumps_in_the_one_format() -> None:
    t = task(
        status="retrying",
        error="boom",
        next_attempt_at="2026-12-03T12:01:00+01:00",
        started_at=datetime(2026, 12, 3, 12, 0, 1, tzinfo=UTC),
        errors=[{"attempt": 1, "kind": "error", "message": "boom", "at": 1_800_000_000_000}],
    )
    data = t.model_dump(mode="json")
    assert data["created_at"] == "2026-12-03T12:00:00.123Z"
    assert data["started_at"] == "2026-12-03T12:00:01.000Z"
    assert data["next_attempt_at"] == "2026-12-03T11:01:00.000Z"
    assert data["errors"][0]["at"] == "2027-01-15T08:00:00.000Z"
    # In Python a time stays a datetime.
    assert isinstance(t.model_dump()["created_at"], datetime)


def test_schedules_and_keys_use_it_too() -> None:
    schedule = Schedule.model_validate(
        {
            "name": "s",
            "expression": "rate(1 day)",
            "task": {"name": "echo", "run_at": "2030-01-01T09:00:00.5+00:00"},
            "next_runs": [datetime(2030, 1, 1, tzinfo=UTC)],
        }
    )
    data = schedule.model_dump(mode="json")
    assert data["next_runs"] == ["2030-01-01T00:00:00.000Z"]
    assert data["task"]["run_at"] == "2030-01-01T09:00:00.500Z"
    key = KeyRecord(
        key_id="k", tenant="t", scopes=["admin"], name="", created_at=1_800_000_000, revoked=False
    )
    assert key.model_dump(mode="json")["created_at"] == "2027-01-15T08:00:00.000Z"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_final_task_from_an_older_api_shows_no_pending_retry(status: str) -> None:
    # What an API from before the fix answers: the SDK still shows a final task without.
    t = task(status=status, error="boom", next_attempt_at="2026-12-03T12:01:00Z")
    assert (t.error, t.next_attempt_at) == (None, None)


def test_a_retrying_task_shows_its_pending_retry() -> None:
    t = task(status="retrying", error="boom", next_attempt_at="2026-12-03T12:01:00Z")
    assert t.status is TaskStatus.RETRYING
    assert t.error == "boom" and t.next_attempt_at is not None
