"""Queue commands over the API: `stratoq dlq` (dead letters) and `stratoq queues` (depths)."""

from __future__ import annotations

import argparse

from stratoq.cli.common import Subparsers, client, positive, print_json


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
    q = sub.add_parser("queues", help="queue depths")
    q.set_defaults(func=cmd_queues)


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
