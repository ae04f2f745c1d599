"""Task commands over the API: enqueue, status, wait, tasks (the listing), cancel, retry."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from stratoq.cli import limits
from stratoq.cli.common import Subparsers, UsageError, client, payload, positive, print_json


def register(sub: Subparsers) -> None:
    """Add the task commands to the command line."""
    e = sub.add_parser("enqueue", help="enqueue a task")
    e.add_argument("name")
    e.add_argument("--payload", help="JSON payload")
    e.add_argument("--queue", default="default")
    e.add_argument("--priority", choices=["high", "default", "low"])
    e.add_argument("--delay-seconds", dest="delay_seconds", type=int)
    e.add_argument("--run-at", dest="run_at", help="RFC 3339 time, e.g. 2030-01-01T09:00:00Z")
    e.add_argument("--timeout-seconds", dest="timeout_seconds", type=int)
    e.add_argument("--max-attempts", dest="max_attempts", type=int)
    e.add_argument("--idempotency-key", dest="idempotency_key")
    e.add_argument(
        "--unique",
        action="store_true",
        help="deduplicate on name + payload (a derived idempotency key; not with "
        "--idempotency-key)",
    )
    e.add_argument(
        "--idempotency-window",
        dest="idempotency_window_seconds",
        type=positive,
        metavar="SECONDS",
        help="how long the key holds (1 s to 7 days; default the deployment's, 24 h)",
    )
    e.add_argument(
        "--allow-unknown-name",
        dest="allow_unknown_name",
        action="store_true",
        help="enqueue even if the API knows no task of this name (its workers deploy later)",
    )
    limits.add_task_limits(e)
    e.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the result")
    e.set_defaults(func=cmd_enqueue)

    s = sub.add_parser("status", help="show a task")
    s.add_argument("id")
    s.set_defaults(func=cmd_status)

    wt = sub.add_parser("wait", help="wait for tasks to finish (a progress bar for many)")
    wt.add_argument("ids", nargs="+", metavar="ID")
    wt.add_argument("--timeout", type=float, default=300.0)
    wt.add_argument("--progress", action="store_true", help="show the bar even when piped")
    wt.set_defaults(func=cmd_wait)

    t = sub.add_parser("tasks", help="list tasks, newest first")
    t.add_argument(
        "--status",
        choices=["scheduled", "queued", "running", "retrying", "succeeded", "failed", "cancelled"],
    )
    t.add_argument("--name")
    t.add_argument("--queue")
    t.add_argument(
        "--created-after", dest="created_after", help="RFC 3339 time, e.g. 2030-01-01T09:00:00Z"
    )
    t.add_argument("--created-before", dest="created_before", help="RFC 3339 time")
    t.add_argument("--limit", type=positive, default=50)
    t.add_argument("--next-token", dest="next_token")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tasks)

    c = sub.add_parser("cancel", help="cancel a task (a running one is stopped), or many by filter")
    c.add_argument("id", nargs="?")
    c.add_argument("--queue", help="in bulk: tasks of this queue")
    c.add_argument("--name", help="in bulk: tasks of this name")
    c.add_argument("--status", choices=["scheduled", "queued", "running", "retrying"])
    c.add_argument(
        "--created-before",
        dest="created_before",
        help="in bulk: RFC 3339 time, e.g. 2030-01-01T09:00:00Z",
    )
    c.add_argument("--max", type=positive, help="in bulk: at most this many")
    c.set_defaults(func=cmd_cancel)
    r = sub.add_parser("retry", help="run a failed task again (or, with --failed, many)")
    r.add_argument("id", nargs="?")
    r.add_argument("--failed", action="store_true", help="retry failed tasks, newest first")
    r.add_argument("--name", help="with --failed: only tasks of this name")
    r.add_argument("--queue", help="with --failed: only tasks of this queue")
    r.add_argument("--created-after", dest="created_after", help="with --failed: RFC 3339 time")
    r.add_argument("--created-before", dest="created_before", help="with --failed: RFC 3339 time")
    r.add_argument("--max", type=positive, help="with --failed: at most this many")
    r.set_defaults(func=cmd_retry)


def cmd_enqueue(args: argparse.Namespace) -> int:
    data = payload(args)
    options: dict[str, Any] = {"queue": args.queue}
    for key in (
        "priority",
        "delay_seconds",
        "run_at",
        "timeout_seconds",
        "max_attempts",
        "idempotency_key",
        "idempotency_window_seconds",
        *limits.ENQUEUE_FIELDS,
    ):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    for flag in ("unique", "allow_unknown_name"):
        if getattr(args, flag):
            options[flag] = True
    api = client(args)
    task = api.enqueue(args.name, data, **options)
    if args.wait is not None:
        task = api.wait(task.id, timeout=args.wait)
    print_json(task.model_dump(mode="json"))
    return 1 if task.status == "failed" else 0


def cmd_status(args: argparse.Namespace) -> int:
    task = client(args).get(args.id)
    print_json(task.model_dump(mode="json"))
    return 1 if task.status == "failed" else 0


def cmd_wait(args: argparse.Namespace) -> int:
    from stratoq.sdk.client import WaitTimeout

    api = client(args)
    ids = list(dict.fromkeys(args.ids))
    deadline = time.monotonic() + args.timeout
    finished: dict[str, Any] = {}
    bar = _Progress(len(ids), enabled=(len(ids) > 1 and sys.stderr.isatty()) or args.progress)
    while len(finished) < len(ids):
        started = time.monotonic()
        # Each round waits (server side, up to 20 s) on the first unfinished task and
        # then looks at the others without waiting: every task must end anyway, and the
        # bar moves at least once a round.
        pending = [tid for tid in ids if tid not in finished]
        for i, tid in enumerate(pending):
            wait = max(0.0, deadline - time.monotonic()) if i == 0 else 0.0
            task = api.get(tid, wait=wait)
            if task.status.final:
                finished[tid] = task
                bar.update(finished.values())
        if len(finished) < len(ids):
            if time.monotonic() >= deadline:
                bar.close()
                left = len(ids) - len(finished)
                raise WaitTimeout(f"{left} task(s) not finished after {args.timeout:g} s")
            if time.monotonic() - started < 0.2:
                time.sleep(0.2)  # an API that answers without waiting (older than ?wait=)
    bar.close()
    tasks = [finished[i] for i in ids]
    if len(tasks) == 1:
        print_json(tasks[0].model_dump(mode="json"))
    else:
        for t in tasks:
            print(f"{t.id}  {t.status.value:<9}  {t.name}")
    return 0 if all(t.status == "succeeded" for t in tasks) else 1


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled

    def update(self, done: Any) -> None:
        if not self.enabled:
            return
        tasks = list(done)
        ok = sum(1 for t in tasks if t.status == "succeeded")
        width = 30
        filled = int(width * len(tasks) / max(1, self.total))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {len(tasks)}/{self.total} "
            f"succeeded {ok} failed/cancelled {len(tasks) - ok}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def time_arg(flag: str, value: str | None) -> datetime | None:
    """An RFC 3339 time given on the command line (UTC when it names no offset)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an RFC 3339 time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def cmd_tasks(args: argparse.Namespace) -> int:
    page = client(args).list(
        args.status,
        args.name,
        args.limit,
        args.next_token,
        queue=args.queue,
        created_after=time_arg("--created-after", args.created_after),
        created_before=time_arg("--created-before", args.created_before),
    )
    if args.json:
        tasks = [t.model_dump(mode="json") for t in page]
        print_json({"tasks": tasks, "next_token": page.next_token})
        return 0
    for t in page:
        print(f"{t.id}  {t.status.value:<9}  {t.attempts}/{t.max_attempts}  {t.name}")
    if page.next_token:
        print(f"more: --next-token {page.next_token}", file=sys.stderr)
    return 0


_FILTERS = ("queue", "name", "status", "created_before")


def cmd_cancel(args: argparse.Namespace) -> int:
    given = [f for f in _FILTERS if getattr(args, f) is not None]
    if args.id is not None:
        if given or args.max is not None:
            raise UsageError("give a task id or filters (--queue, --name, ...), not both")
        print_json(client(args).cancel(args.id).model_dump(mode="json"))
        return 0
    if not given:
        raise UsageError(
            "give a task id, or at least one of --queue, --name, --status, --created-before"
        )
    before = time_arg("--created-before", args.created_before)
    api = client(args)
    left = args.max
    cancelled = requested = 0
    while True:
        # The API takes at most 10,000 per call; without --max, go on until none is left.
        answer = api.cancel_many(
            queue=args.queue,
            name=args.name,
            status=args.status,
            created_before=before,
            max_tasks=min(10_000, left) if left is not None else 10_000,
        )
        cancelled += answer["cancelled"]
        requested += answer["requested"]
        if left is not None:
            left -= answer["cancelled"] + answer["requested"]
        if not answer["more"] or (left is not None and left <= 0):
            break
    more = " (more remain)" if answer["more"] else ""
    print(f"cancelled {cancelled} task(s); asked {requested} running task(s) to stop{more}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    if (args.id is None) == (not args.failed):
        raise UsageError("give a task id, or --failed to retry failed tasks in bulk")
    filters = (args.name, args.queue, args.created_after, args.created_before, args.max)
    if args.id is not None:
        if any(f is not None for f in filters):
            raise UsageError(
                "--name, --queue, --created-after, --created-before and --max go with "
                "--failed, not with a task id"
            )
        print_json(client(args).retry(args.id).model_dump(mode="json"))
        return 0
    after = time_arg("--created-after", args.created_after)
    before = time_arg("--created-before", args.created_before)
    api = client(args)
    left = args.max
    total = 0
    seen: set[str] = set()
    while True:
        # The API retries at most 1,000 per call; without --max, go on until none is left.
        answer = api.retry_failed(
            args.name,
            min(1000, left) if left is not None else 1000,
            queue=args.queue,
            created_after=after,
            created_before=before,
        )
        total += answer["retried"]
        if left is not None:
            left -= answer["retried"]
        fresh = set(answer.get("task_ids", [])) - seen
        seen |= fresh
        # Tasks that fail again at once come back to the failed list: once a call finds
        # only tasks this run already retried, stop rather than go round forever.
        if not answer["more"] or not fresh or (left is not None and left <= 0):
            break
    print(f"retried {total} failed task(s)" + (" (more remain)" if answer["more"] else ""))
    return 0
