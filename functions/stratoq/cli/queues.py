"""Queue commands over the API: `stratoq dlq` (dead letters) and `stratoq queues`
(depths; pause and resume, limit and unlimit a queue or a task name)."""

from __future__ import annotations

import argparse
import re

from stratoq.cli import limits
from stratoq.cli.common import Subparsers, UsageError, client, positive, print_json
from stratoq.core.models import QUEUE_PATTERN, TASK_NAME_PATTERN


def register(sub: Subparsers) -> None:
    """Add `dlq` and `queues` to the command line."""
    dl = sub.add_parser("dlq", help="dead-letter queues")
    dls = dl.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    dll = dls.add_parser("list", help="dead-letter message counts per queue")
    dll.set_defaults(func=cmd_dlq_list)
    dlr = dls.add_parser(
        "redrive",
        help="move a queue's dead-letter messages back to work (operator admin key)",
    )
    dlr.add_argument("--queue", default="default")
    dlr.add_argument(
        "--max", type=positive, help="at most this many messages (default 1000; up to 10000)"
    )
    dlr.add_argument("--json", action="store_true")
    dlr.set_defaults(func=cmd_dlq_redrive)
    q = sub.add_parser("queues", help="queue depths (JSON); pause and resume")
    q.set_defaults(func=cmd_queues)
    qs = q.add_subparsers(dest="queues_command", metavar="ACTION")
    for action, text in (("pause", "hold"), ("resume", "run again")):
        qp = qs.add_parser(
            action,
            help=f"{text} every tenant's tasks of a queue or a task name (operator admin key)",
        )
        qp.add_argument("queue", nargs="?", type=_queue, help="the queue")
        qp.add_argument("--task-name", type=_task_name, help="a task name instead, on every queue")
        qp.set_defaults(func=cmd_pause if action == "pause" else cmd_resume)
    ql = qs.add_parser("paused", help="list the paused queues and task names")
    ql.add_argument("--json", action="store_true")
    ql.set_defaults(func=cmd_paused)
    limits.add_commands(qs, _queue, _task_name)


def _queue(text: str) -> str:
    if not re.fullmatch(QUEUE_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a queue name (lower-case letters, digits, - and _)"
        )
    return text


def _task_name(text: str) -> str:
    if not re.fullmatch(TASK_NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a task name (letters, digits, _ . : -; up to 128)"
        )
    return text


def cmd_dlq_list(args: argparse.Namespace) -> int:
    for q in client(args).queues():
        dead = "-" if q.get("dead_letter") is None else q["dead_letter"]
        print(f"{q['queue']:<24} dead-letter {dead}")
    return 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    report = client(args).redrive(args.queue, args.max)
    if args.json:
        print_json(report)
    else:
        print(
            f"{report['queue']}: received {report['received']}, redriven {report['redriven']}, "
            f"resent {report['resent']}, dropped {report['dropped']}, left {report['left']}"
            + ("; more remain, run it again" if report["more"] else "")
        )
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    print_json(client(args).queues())
    return 0


def _change(args: argparse.Namespace, pause: bool) -> int:
    verb = "pause" if pause else "resume"
    if (args.queue is None) == (args.task_name is None):
        raise UsageError(f"queues {verb}: name either a queue or a --task-name")
    api = client(args)
    if args.task_name is not None:
        done = (api.pause_task_name if pause else api.resume_task_name)(args.task_name)
    else:
        done = (api.pause_queue if pause else api.resume_queue)(args.queue)
    what = f"{done['kind'].replace('_', ' ')} {done['name']}"
    state = "paused" if done["paused"] else "running"
    print(f"{what}: {state}" + ("" if done["changed"] else f" (it already was {state})"))
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    return _change(args, pause=True)


def cmd_resume(args: argparse.Namespace) -> int:
    return _change(args, pause=False)


def cmd_paused(args: argparse.Namespace) -> int:
    paused = client(args).paused()
    if args.json:
        print_json(paused)
        return 0
    for kind, names in (("queues", paused["queues"]), ("task names", paused["task_names"])):
        print(f"paused {kind}: {', '.join(names) or 'none'}")
    return 0
