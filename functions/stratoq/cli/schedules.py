"""`stratoq schedules`: recurring tasks over the API (an admin key), and `preview`, which
needs no API."""

from __future__ import annotations

import argparse
from typing import Any

from stratoq.cli.common import Subparsers, UsageError, client, payload, positive, print_json


def register(sub: Subparsers) -> None:
    """Add `schedules` to the command line."""
    sc = sub.add_parser("schedules", help="recurring tasks (needs an admin key)")
    scs = sc.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")
    sp = scs.add_parser("put", aliases=["create"], help="create or replace a schedule")
    sp.add_argument("name")
    sp.add_argument(
        "--expression", "-e", required=True, help="cron(...) or rate(...), in --timezone"
    )
    sp.add_argument(
        "--timezone", "--tz", default="UTC", help="IANA zone of the cron expression (UTC)"
    )
    sp.add_argument(
        "--jitter", type=int, default=0, metavar="SECONDS", help="random delay 0..SECONDS"
    )
    sp.add_argument(
        "--missed",
        default="skip",
        help="skip (default) or run_once: one task on enable if fire times were missed",
    )
    sp.add_argument("--task", required=True, help="task name")
    sp.add_argument("--payload", help="JSON payload")
    sp.add_argument("--queue")
    sp.add_argument("--timeout-seconds", dest="timeout_seconds", type=int)
    sp.add_argument("--max-attempts", dest="max_attempts", type=int)
    sp.add_argument("--disabled", action="store_true", help="create it switched off")
    sp.set_defaults(func=cmd_schedules_put)
    sl = scs.add_parser("list", help="list schedules")
    sl.set_defaults(func=cmd_schedules_list)
    ss = scs.add_parser("show", help="a schedule and its next 5 fire times")
    ss.add_argument("name")
    ss.set_defaults(func=cmd_schedules_show)
    sd = scs.add_parser("delete", help="delete a schedule")
    sd.add_argument("name")
    sd.set_defaults(func=cmd_schedules_delete)
    st = scs.add_parser("trigger", help="fire a schedule once, now")
    st.add_argument("name")
    st.set_defaults(func=cmd_schedules_trigger)
    sv = scs.add_parser("preview", help="print an expression's next fire times (no API)")
    sv.add_argument("expression")
    sv.add_argument("--count", "-n", type=positive, default=5)
    sv.add_argument("--after", help="start from this RFC 3339 time (default now)")
    sv.add_argument(
        "--timezone", "--tz", default="UTC", help="read the expression in this IANA zone"
    )
    sv.set_defaults(func=cmd_schedules_preview)


def cmd_schedules_put(args: argparse.Namespace) -> int:
    data = payload(args)
    from stratoq.core.models import TaskRequest
    from stratoq.core.schedules import ScheduleSpec, check_spec

    task: dict[str, Any] = {"name": args.task, "payload": data}
    for key in ("queue", "timeout_seconds", "max_attempts"):
        if getattr(args, key) is not None:
            task[key] = getattr(args, key)
    request = TaskRequest.model_validate(task)
    options = {"timezone": args.timezone, "jitter_seconds": args.jitter, "missed": args.missed}
    # The same validation the API applies, before any request: a sentence, exit 2.
    check_spec(ScheduleSpec(expression=args.expression, task=request, **options))
    print_json(
        client(args).put_schedule(args.name, args.expression, request, not args.disabled, **options)
    )
    return 0


def cmd_schedules_list(args: argparse.Namespace) -> int:
    for sched in client(args).list_schedules():
        state = "enabled" if sched["enabled"] else "disabled"
        nxt = sched["next_runs"][0] if sched["next_runs"] else "-"
        if sched["next_runs_local"]:
            nxt = sched["next_runs_local"][0]
        print(
            f"{sched['name']:<24} {state:<8} {sched['expression']:<28} "
            f"{sched['timezone']:<16} next {nxt}  {sched['task']['name']}"
        )
    return 0


def cmd_schedules_show(args: argparse.Namespace) -> int:
    print_json(client(args).get_schedule(args.name))
    return 0


def cmd_schedules_delete(args: argparse.Namespace) -> int:
    client(args).delete_schedule(args.name)
    print(f"deleted schedule {args.name}")
    return 0


def cmd_schedules_trigger(args: argparse.Namespace) -> int:
    print_json(client(args).trigger_schedule(args.name).model_dump(mode="json"))
    return 0


def cmd_schedules_preview(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from stratoq.core.schedules import load_zone, parse

    zone = load_zone(args.timezone)
    after = datetime.now(UTC)
    if args.after:
        try:
            after = datetime.fromisoformat(args.after.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--after {args.after!r} is not an RFC 3339 time") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    for when in parse(args.expression).next_runs(after, args.count, zone):
        if args.timezone == "UTC":
            print(when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        else:
            print(when.astimezone(zone).isoformat(timespec="seconds"))
    return 0
