"""Task handlers the tests use (loaded as STRATOQ_TASKS_MODULE=tests.support.tasks)."""

from __future__ import annotations

import os
import time
from typing import Any

import stratoq.examples  # noqa: F401 - the example tasks too
from stratoq import Fail, Retry, context, lock, task


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


@task("effect")
def effect(payload: dict[str, Any]) -> str:
    """Apply a side effect once: a conditional put of (task id -> fencing token).

    A retry after a crash finds the effect of an earlier attempt and reports it instead
    of applying it again: the pattern stratoq.context().fencing_token is for.
    """
    import boto3
    from botocore.exceptions import ClientError

    ctx = context()
    db = boto3.client(
        "dynamodb",
        endpoint_url=os.environ["STRATOQ_AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        db.put_item(
            TableName=payload["table"],
            Item={"pk": {"S": ctx.task_id}, "token": {"S": ctx.fencing_token}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        got = db.get_item(TableName=payload["table"], Key={"pk": {"S": ctx.task_id}})
        return str(got["Item"]["token"]["S"])
    return ctx.fencing_token


@task("guarded")
def guarded(payload: dict[str, Any]) -> dict[str, Any]:
    """Hold stratoq.lock(payload['lock']) while appending start/end lines to payload['path']."""
    ctx = context()
    with lock(payload["lock"], ttl=payload.get("ttl", 30), wait=payload.get("wait", 0)) as held:
        _append(payload["path"], f"start {ctx.task_id} {held.token}")
        time.sleep(payload.get("sleep", 0))
        _append(payload["path"], f"end {ctx.task_id} {held.token}")
    return {"token": held.token}


@task("interval")
def interval(payload: dict[str, Any]) -> int:
    """Append 'start|end <task id> <CLOCK_MONOTONIC ns>' lines to payload['path'].

    CLOCK_MONOTONIC is one clock for every process of the machine, so intervals written
    by different pollers can be compared.
    """
    ctx = context()
    _append(payload["path"], f"start {ctx.task_id} {time.monotonic_ns()}")
    time.sleep(payload.get("sleep", 0))
    _append(payload["path"], f"end {ctx.task_id} {time.monotonic_ns()}")
    return ctx.attempt


@task("stamp")
def stamp(payload: dict[str, Any]) -> int:
    """Append '<task id> <epoch ns>' to payload['path'] as it starts: the wall clock, to
    compare with rate-limit tokens (epoch ms)."""
    _append(payload["path"], f"{context().task_id} {time.time_ns()}")
    return context().attempt


@task("lock_token")
def lock_token(payload: Any) -> int | None:
    """The fencing token of the task's lock_key lock (None without one)."""
    return context().lock_token


@task("progress")
def progress(payload: dict[str, Any]) -> str:
    """Report progress: 0.25 at once, then `chatty` reports in a burst, then wait for the
    file `gate` to exist (the test opens it) and report 1.0 just before returning."""
    ctx = context()
    ctx.progress(0.25, "started")
    for i in range(payload.get("chatty", 0)):
        ctx.progress(0.5, f"step {i}")
    while not os.path.exists(payload["gate"]):
        time.sleep(0.05)
    ctx.progress(1.0, "done")
    return "ok"


@task("until_cancelled")
def until_cancelled(payload: dict[str, Any]) -> str:
    """Loop up to payload['seconds'] (default 60) until the task is cancelled; then
    append 'saw cancel <task id>' to payload['path'] (if given) and return."""
    ctx = context()
    deadline = time.monotonic() + payload.get("seconds", 60)
    while time.monotonic() < deadline:
        if ctx.cancelled:
            if "path" in payload:
                _append(payload["path"], f"saw cancel {ctx.task_id}")
            return "stopped"
        time.sleep(0.05)
    return "ran to the end"


@task("add_to_parent")
def add_to_parent(payload: dict[str, Any]) -> int:
    """A chain step: the previous step's result (0 for the first) plus payload['n']."""
    return int(context().parent_result or 0) + int(payload["n"])


@task("gather")
def gather(payload: Any) -> dict[str, Any]:
    """A chord callback: every dependency's result by node name, and the payload."""
    return {"parents": dict(context().parent_results), "payload": payload}


@task("spawner")
def spawner(payload: dict[str, Any]) -> str:
    """Spawn payload['tasks'] echo children and, with payload['chain'], a two-step chain."""
    from stratoq import chain

    ctx = context()
    for i in range(payload.get("tasks", 0)):
        ctx.spawn("echo", {"child": i})
    if payload.get("chain"):
        ctx.spawn_workflow(chain(("add_to_parent", {"n": 1}), ("add_to_parent", {"n": 2})))
    return "spawned"
