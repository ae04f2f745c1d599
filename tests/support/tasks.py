"""Task handlers the tests use (loaded as STRATOQ_TASKS_MODULE=tests.support.tasks)."""

from __future__ import annotations

import os
import time
from typing import Any

import stratoq.examples  # noqa: F401 - the example tasks too
from stratoq import Fail, Retry, context, task


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic, across processes too.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@task("record")
def record(payload: dict[str, Any]) -> dict[str, Any]:
    """Append 'start' and 'end' lines (task, attempt, pid) to payload['path'], sleeping between."""
    ctx = context()
    _append(payload["path"], f"start {ctx.task_id} {ctx.attempt} {os.getpid()}")
    time.sleep(payload.get("sleep", 0))
    _append(payload["path"], f"end {ctx.task_id} {ctx.attempt} {os.getpid()}")
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@task("retry_after")
def retry_after(payload: dict[str, Any]) -> int:
    if context().attempt == 1:
        raise Retry(payload["delay"], reason="asked to come back later")
    return context().attempt


@task("give_up")
def give_up(payload: Any) -> None:
    raise Fail("the input can never work")


@task("crash")
def crash(payload: Any) -> None:
    os._exit(3)  # a handler that kills its process (segfault, OOM kill, ...)


@task("not_json")
def not_json(payload: Any) -> object:
    return object()


@task("fail_while")
def fail_while(payload: dict[str, Any]) -> str:
    """Fail (permanently) while the file payload['path'] exists."""
    if os.path.exists(payload["path"]):
        raise Fail(f"{payload['path']} exists")
    return "ok"
