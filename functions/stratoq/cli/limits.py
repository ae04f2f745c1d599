"""Flow-control arguments and commands: a task's own limits on `stratoq enqueue`, and
`stratoq queues limit | unlimit | limits` for the operator's limits on a queue or a
task name (docs/flow-control.md)."""

from __future__ import annotations

import argparse
from typing import Any

from stratoq.cli.common import UsageError, client, print_json
from stratoq.core.limits import MAX_CONCURRENCY, MAX_KEY_LENGTH, parse_rate
from stratoq.core.models import MAX_DEBOUNCE_SECONDS, MIN_DEBOUNCE_SECONDS

# `stratoq enqueue` flags -> request fields.
ENQUEUE_FIELDS = (
    "concurrency_key",
    "max_concurrency",
    "rate_limit",
    "rate_limit_key",
    "debounce_key",
    "debounce_seconds",
)


def rate(text: str) -> str:
    """An argparse type: a rate such as 10/s, in its canonical form."""
    try:
        return str(parse_rate(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def concurrency(text: str) -> int:
    """An argparse type: a concurrency limit, 1 to MAX_CONCURRENCY."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_CONCURRENCY}, got {value}")
    return value


def window(text: str) -> int:
    """An argparse type: a debounce window in whole seconds, 1 to a day."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not MIN_DEBOUNCE_SECONDS <= value <= MAX_DEBOUNCE_SECONDS:
        raise argparse.ArgumentTypeError(
            f"a debounce window is {MIN_DEBOUNCE_SECONDS} to {MAX_DEBOUNCE_SECONDS} "
            f"seconds, got {value}"
        )
    return value


def key(text: str) -> str:
    """An argparse type: a concurrency, rate-limit or debounce key, 1 to 256 characters."""
    if not 0 < len(text) <= MAX_KEY_LENGTH:
        raise argparse.ArgumentTypeError(
            f"a key has 1 to {MAX_KEY_LENGTH} characters, this one {len(text)}"
        )
    return text


def add_task_limits(parser: argparse.ArgumentParser) -> None:
    """`stratoq enqueue`'s flags for the task's own limits."""
    parser.add_argument(
        "--concurrency-key",
        dest="concurrency_key",
        type=key,
        help="count the task against this key's limit (e.g. a customer id)",
    )
    parser.add_argument(
        "--max-concurrency",
        dest="max_concurrency",
        type=concurrency,
        metavar="N",
        help="at most N of the key's (without a key: the name's) tasks run at once",
    )
    parser.add_argument(
        "--rate-limit",
        dest="rate_limit",
        type=rate,
        metavar="RATE",
        help="at most RATE start (10/s, 60/m, 1000/h, 5/d) per key or name",
    )
    parser.add_argument("--rate-limit-key", dest="rate_limit_key", type=key)
    parser.add_argument(
        "--debounce-key",
        dest="debounce_key",
        type=key,
        help="supersede the key's earlier tasks that have not started: only the last runs",
    )
    parser.add_argument(
        "--debounce-seconds",
        dest="debounce_seconds",
        type=window,
        metavar="N",
        help="with --debounce-key: run N seconds after the enqueue unless superseded",
    )


def add_commands(actions: Any, queue_type: Any, name_type: Any) -> None:
    """`stratoq queues limit | unlimit | limits`."""
    lim = actions.add_parser(
        "limit",
        help="limit a queue's or a task name's tasks, every tenant's (operator admin key)",
    )
    lim.add_argument("queue", nargs="?", type=queue_type, help="the queue")
    lim.add_argument("--task-name", type=name_type, help="a task name instead, on every queue")
    lim.add_argument("--max-concurrency", dest="max_concurrency", type=concurrency, metavar="N")
    lim.add_argument("--rate-limit", dest="rate_limit", type=rate, metavar="RATE")
    lim.set_defaults(func=cmd_limit)
    un = actions.add_parser("unlimit", help="lift a queue's or a task name's limits")
    un.add_argument("queue", nargs="?", type=queue_type, help="the queue")
    un.add_argument("--task-name", type=name_type, help="a task name instead")
    un.set_defaults(func=cmd_unlimit)
    ls = actions.add_parser("limits", help="list the limits of queues and task names")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_limits)


def _target(args: argparse.Namespace, verb: str) -> tuple[bool, str]:
    if (args.queue is None) == (args.task_name is None):
        raise UsageError(f"queues {verb}: name either a queue or a --task-name")
    return (False, args.queue) if args.task_name is None else (True, args.task_name)


def _describe(entry: dict[str, Any]) -> str:
    parts = []
    if entry.get("max_concurrency") is not None:
        parts.append(f"at most {entry['max_concurrency']} at once")
    if entry.get("rate_limit") is not None:
        parts.append(f"at most {entry['rate_limit']}")
    return f"{entry['kind'].replace('_', ' ')} {entry['name']}: {', '.join(parts)}"


def cmd_limit(args: argparse.Namespace) -> int:
    by_name, name = _target(args, "limit")
    if args.max_concurrency is None and args.rate_limit is None:
        raise UsageError("queues limit: give --max-concurrency, --rate-limit or both")
    api = client(args)
    act = api.limit_task_name if by_name else api.limit_queue
    print(_describe(act(name, args.max_concurrency, args.rate_limit)))
    return 0


def cmd_unlimit(args: argparse.Namespace) -> int:
    by_name, name = _target(args, "unlimit")
    api = client(args)
    done = (api.unlimit_task_name if by_name else api.unlimit_queue)(name)
    what = f"{done['kind'].replace('_', ' ')} {done['name']}"
    print(f"{what}: no limits" + ("" if done["removed"] else " (it had none)"))
    return 0


def cmd_limits(args: argparse.Namespace) -> int:
    entries = client(args).limits()
    if args.json:
        print_json(entries)
    else:
        for entry in entries:
            print(_describe(entry))
        if not entries:
            print("no limits")
    return 0
