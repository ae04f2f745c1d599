"""Tasks with options and typed payloads (`stratoq dev --tasks tests.support.typed_tasks`).

Names are prefixed `typed_` so that importing this module next to other tasks modules in
one test process registers nothing twice.
"""

from __future__ import annotations

from pydantic import BaseModel

from stratoq import Fail, task


class AddIn(BaseModel):
    a: int
    b: int


class Sum(BaseModel):
    total: int


@task("typed_add", priority="high", max_attempts=3, timeout_seconds=30)
def typed_add(p: AddIn) -> Sum:
    """A typed task with options: its payload is an AddIn, its result a Sum."""
    return Sum(total=p.a + p.b)


@task("typed_refuse", max_attempts=3)
def typed_refuse(p: AddIn) -> int:
    """Fails for good, whatever the payload."""
    raise Fail(f"refusing {p.a} + {p.b}")


@task(queue="reports")
def typed_elsewhere(payload: object) -> object:
    """Its default queue, `reports`, is one the dev stack does not have."""
    return payload
