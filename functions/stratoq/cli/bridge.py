"""`stratoq bridge`: enqueue tasks from a message broker (docs/bridges.md)."""

from __future__ import annotations

import argparse
import os

from stratoq.cli.common import (
    Subparsers,
    UsageError,
    needs_extra,
    positive,
    services_for,
    settings_from,
)


def register(sub: Subparsers) -> None:
    """Add `bridge` to the command line."""
    br = sub.add_parser("bridge", help="enqueue tasks from a message broker (docs/bridges.md)")
    brs = br.add_subparsers(dest="bridge_command", required=True, metavar="BROKER")
    brr = brs.add_parser(
        "rabbitmq", help="consume a RabbitMQ queue; each message (a TaskRequest JSON) is a task"
    )
    brr.add_argument(
        "--url",
        help="amqp://user:pass@host:5672/vhost (default: env STRATOQ_RABBITMQ_URL, which keeps "
        "the password out of the process list)",
    )
    brr.add_argument("--queue", required=True, help="the queue to consume (must exist)")
    brr.add_argument(
        "--prefetch",
        type=positive,
        default=10,
        help="messages per batch: unacknowledged at most, enqueued together (default 10)",
    )
    brr.add_argument(
        "--linger",
        type=float,
        default=0.2,
        help="seconds to wait for a batch to fill once its first message came (default 0.2)",
    )
    brr.add_argument("--tenant", help="tenant of the tasks (default: env STRATOQ_BRIDGE_TENANT)")
    brr.set_defaults(func=cmd_bridge_rabbitmq)


def cmd_bridge_rabbitmq(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("STRATOQ_RABBITMQ_URL", "")
    if not url:
        raise UsageError("give the broker with --url amqp://... or STRATOQ_RABBITMQ_URL")
    if not args.queue.strip():
        raise UsageError("--queue must name a RabbitMQ queue")
    if not 0 < args.linger <= 60:
        raise UsageError(
            f"--linger must be more than 0 and at most 60 seconds, got {args.linger:g}"
        )
    try:
        from stratoq.runtime.rabbitmq import RabbitBridge, RabbitOptions, check_url
    except ImportError as exc:
        if exc.name is None or not exc.name.startswith("pika"):
            raise
        raise needs_extra("bridge rabbitmq", "bridge", exc) from None
    from stratoq.services.bridge import Bridge

    settings = settings_from(args)
    # Long-running: its counters are on /metrics where the container entry point serves.
    from stratoq.observability.prometheus import PrometheusRecorder

    enqueuer = services_for(settings, PrometheusRecorder()).enqueuer
    bridge = Bridge(enqueuer, args.tenant or settings.bridge_tenant, "rabbitmq")
    options = RabbitOptions(check_url(url), args.queue, args.prefetch, args.linger)
    return RabbitBridge(bridge, options).run()
