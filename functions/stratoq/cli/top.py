"""`stratoq top`: the command; the screen it draws is in top_view (imported when it runs,
so that every other command starts without the metrics parser)."""

from __future__ import annotations

import argparse
import os

from stratoq.cli.common import Subparsers, UsageError, client


def register(sub: Subparsers) -> None:
    """Add `top` to the command line."""
    tp = sub.add_parser("top", help="live view of queues, task rates and worker slots")
    tp.add_argument("--interval", "-n", type=float, default=2.0, help="seconds between screens")
    tp.add_argument(
        "--once", action="store_true", help="print one screen (rates over --interval) and exit"
    )
    tp.add_argument("--json", action="store_true", help="one snapshot as JSON (implies --once)")
    tp.add_argument(
        "--metrics-url",
        action="append",
        help="a /metrics endpoint to read, repeatable (default: env STRATOQ_METRICS_URL or "
        "the dev stack's)",
    )
    tp.add_argument("--no-metrics", action="store_true", help="queue depths from the API only")
    tp.add_argument("--no-api", action="store_true", help="read only the metrics endpoints")
    tp.set_defaults(func=cmd_top)


def cmd_top(args: argparse.Namespace) -> int:
    from stratoq.cli import top_view
    from stratoq.core.errors import ConfigError
    from stratoq.sdk.client import dev_config

    urls = list(args.metrics_url or [])
    if not urls and not args.no_metrics:
        found = os.environ.get("STRATOQ_METRICS_URL") or dev_config().get("metrics_url")
        urls = [found] if found else []
    queues = None
    label = ""
    if not args.no_api:
        try:
            api = client(args)
            queues = api.queues
            label = api.api_url
        except ConfigError:
            if not urls:
                raise
    if queues is None and not urls:
        raise UsageError("nothing to show: no API (--api-url/--api-key) and no --metrics-url")
    return top_view.run(
        queues,
        urls,
        interval=args.interval,
        once=args.once or args.json,
        as_json=args.json,
        label=label,
    )
