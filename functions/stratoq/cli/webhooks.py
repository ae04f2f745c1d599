"""`stratoq webhooks`: a tenant's webhook subscriptions over the API (an admin key)."""

from __future__ import annotations

import argparse
import sys

from stratoq.cli.common import Subparsers, client, print_json
from stratoq.core.errors import UsageError
from stratoq.core.events import EVENT_TYPES, check_event_types


def register(sub: Subparsers) -> None:
    """Add `webhooks` to the command line."""
    w = sub.add_parser("webhooks", help="webhooks: signed POSTs of task events (an admin key)")
    ws = w.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    wc = ws.add_parser(
        "create",
        help="subscribe a URL to task events; the signing secret is printed once",
        description="Subscribe URL (https://; http://127.0.0.1 on the dev stack) to task "
        "events. The signing secret is printed on stdout, once (docs/webhooks.md shows "
        "how a receiver verifies deliveries with it).",
    )
    wc.add_argument("url")
    wc.add_argument(
        "--events",
        default=",".join(EVENT_TYPES),
        help=f"comma-separated event types (default: all: {','.join(EVENT_TYPES)})",
    )
    wc.set_defaults(func=cmd_create)
    wl = ws.add_parser("list", help="list the tenant's webhooks (never the secrets)")
    wl.set_defaults(func=cmd_list)
    wd = ws.add_parser("delete", help="delete a webhook and its dead letters")
    wd.add_argument("webhook_id")
    wd.set_defaults(func=cmd_delete)
    wf = ws.add_parser("failures", help="events a webhook never accepted (dead letters), as JSON")
    wf.add_argument("webhook_id")
    wf.set_defaults(func=cmd_failures)


def cmd_create(args: argparse.Namespace) -> int:
    events = [e.strip() for e in args.events.split(",") if e.strip()]
    problem = check_event_types(events)
    if problem is not None:
        raise UsageError(f"--events: {problem}")
    if not args.url.startswith(("https://", "http://")):
        raise UsageError(f"URL must be an https:// URL, got {args.url!r}")
    # Whether plain http is allowed is the API's call (the dev stack's receivers).
    created = client(args).create_webhook(args.url, events)
    print(created["secret"])
    print(
        f"webhook {created['id']} -> {created['url']} ({','.join(created['events'])}): "
        "store the secret now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for w in client(args).list_webhooks():
        print(f"{w['id']}  {w['url']}  {','.join(w['events'])}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client(args).delete_webhook(args.webhook_id)
    print(f"deleted {args.webhook_id}")
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    print_json(client(args).webhook_failures(args.webhook_id))
    return 0
