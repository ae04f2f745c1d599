"""Benchmark task handlers (stratoq side)."""

from __future__ import annotations

import os
from typing import Any

from stratoq import context, task


@task("noop")
def noop(payload: Any) -> None:
    return None


@task("span")
def span(payload: Any) -> None:
    """Append `start|end <task id> <attempt> <process group> <CLOCK_MONOTONIC ns>` lines
    to payload["path"] around a sleep of payload["sleep"] seconds (loadtests.limits).
    The process group is the poller's: a poller killed with -9 ends its spans then."""
    import os
    import time

    from stratoq import context

    ctx = context()

    def line(kind: str) -> None:
        text = f"{kind} {ctx.task_id} {ctx.attempt} {os.getpgrp()} {time.monotonic_ns()}\n"
        fd = os.open(payload["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    line("start")
    time.sleep(float(payload.get("sleep", 0)))
    line("end")


_effect_db: Any = None


def _append(path: str, line: str) -> None:
    # O_APPEND writes of one short line are atomic, across processes too.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@task("effect")
def effect(payload: dict[str, Any]) -> str:
    """Apply a side effect once (loadtests/chaos.py): a conditional put of task -> token.

    Logs `applied TASK TOKEN` to payload['log'] when this attempt's put wrote the row
    (its own earlier write included, whose answer a fault lost), and `found TASK TOKEN`
    when an earlier attempt had (a re-run after a kill, which the put absorbs). Two
    `applied` lines for one task would be an effect applied twice.
    """
    global _effect_db
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    if _effect_db is None:
        _effect_db = boto3.client(
            "dynamodb",
            endpoint_url=os.environ["STRATOQ_AWS_ENDPOINT_URL"],
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - the emulator's placeholder
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
    ctx = context()
    token = ctx.fencing_token
    try:
        _effect_db.put_item(
            TableName=payload["table"],
            Item={"pk": {"S": ctx.task_id}, "token": {"S": token}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        got = _effect_db.get_item(
            TableName=payload["table"], Key={"pk": {"S": ctx.task_id}}, ConsistentRead=True
        )
        held = str(got["Item"]["token"]["S"])
        # The row holding our own token is our put, retried after its answer was lost.
        _append(payload["log"], f"{'applied' if held == token else 'found'} {ctx.task_id} {held}")
        return held
    _append(payload["log"], f"applied {ctx.task_id} {token}")
    return token
