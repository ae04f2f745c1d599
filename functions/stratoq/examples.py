"""Example tasks, loaded by default (`STRATOQ_TASKS_MODULE=stratoq.examples`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from stratoq.core.errors import Fail
from stratoq.core.registry import context, task
from stratoq.sdk import tasks


def _obj(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise Fail("payload must be a JSON object")
    return payload


def _seconds(payload: dict[str, Any], key: str, default: float) -> float:
    value = payload.get(key, default)
    if not isinstance(value, int | float) or value < 0:
        raise Fail(f"payload field {key!r} must be a number of seconds >= 0")
    return float(value)


@task("echo")
def echo(payload: Any) -> Any:
    """Return the payload unchanged."""
    return payload


@task("sleep")
def sleep(payload: Any) -> dict[str, float]:
    """Sleep `seconds` (default 1)."""
    seconds = _seconds(_obj(payload), "seconds", 1.0)
    time.sleep(seconds)
    return {"slept": seconds}


@task("fail")
def fail(payload: Any) -> dict[str, int]:
    """Raise on the first `times` attempts (default: always), then succeed."""
    times = _obj(payload).get("times", 1_000_000)
    if not isinstance(times, int):
        raise Fail("payload field 'times' must be a whole number")
    attempt = context().attempt
    if attempt <= times:
        raise RuntimeError(f"failing on purpose (attempt {attempt} of the first {times})")
    return {"attempt": attempt}


@task("report")
def report(payload: Any) -> dict[str, Any]:
    """A stand-in for a periodic report: what it was asked for, and when it was made (UTC).

    The docs' schedules and deduplication examples enqueue it (`{"day": "2030-01-01"}`).
    """
    made = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"report": _obj(payload), "generated_at": made}


@task("cpu")
def cpu(payload: Any) -> dict[str, int]:
    """Spin the CPU for `seconds` (default 1) in pure Python."""
    seconds = _seconds(_obj(payload), "seconds", 1.0)
    end = time.monotonic() + seconds
    loops = 0
    while time.monotonic() < end:
        loops += 1
    return {"loops": loops}


class Numbers(BaseModel):
    """The payload of `add_numbers`."""

    a: float
    b: float


class Total(BaseModel):
    """The result of `add_numbers`."""

    total: float


@tasks.task("add_numbers", priority="high", max_attempts=3, timeout_seconds=30)
def add_numbers(numbers: Numbers) -> Total:
    """Add `a` and `b`: a typed task (the payload is validated into `Numbers`) with
    options (high priority, 3 attempts, 30 s) that a request's own fields override."""
    return Total(total=numbers.a + numbers.b)


@task("sum_parents")
def sum_parents(payload: Any) -> float:
    """A workflow node: the numbers its dependencies returned, summed, plus payload
    `add` (default 0). A chain of them keeps a running total; a chord's callback adds
    up its members."""
    add = _obj(payload).get("add", 0)
    if not isinstance(add, int | float):
        raise Fail("payload field 'add' must be a number")
    found = context().parent_results.values()
    return sum(v for v in found if isinstance(v, int | float) and not isinstance(v, bool)) + add
