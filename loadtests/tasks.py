"""Benchmark task handlers (stratoq side)."""

from __future__ import annotations

from typing import Any

from stratoq import task


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
