"""`stratoq worker`: poller processes that run tasks outside Lambda (containers, hosts)."""

from __future__ import annotations

import argparse
import os

from stratoq.cli.common import (
    Subparsers,
    UsageError,
    count,
    env_port,
    port,
    positive,
    services_for,
    settings_from,
)


def register(sub: Subparsers) -> None:
    """Add `worker` to the command line."""
    w = sub.add_parser("worker", help="run container pollers until SIGTERM")
    w.add_argument("--concurrency", "-c", type=positive, default=4, help="slots per process")
    w.add_argument("--processes", "-p", type=positive, default=1, help="poller processes")
    w.add_argument(
        "--queues",
        help="comma-separated logical queues, each with its priority queues, or single "
        "priority queues like default:high (default: all)",
    )
    w.add_argument(
        "--priority-mode",
        metavar="MODE",
        help="weighted (share receives by --priority-weights) or strict (high first, then "
        "default, then low); default env STRATOQ_PRIORITY_MODE or weighted",
    )
    w.add_argument(
        "--priority-weights",
        metavar="H,D,L",
        help="weights of high, default and low in weighted mode, e.g. 6,3,1 (default env "
        "STRATOQ_PRIORITY_WEIGHTS or 6,3,1)",
    )
    w.add_argument(
        "--prefetch",
        type=count,
        metavar="N",
        help="messages a poller may hold beyond its free slots, at most (it holds about a "
        "second's worth); 0 never (default env STRATOQ_PREFETCH or 10)",
    )
    w.add_argument(
        "--tasks",
        help="module(s) defining task handlers (default: env STRATOQ_TASKS_MODULE, else "
        "[tool.stratoq] tasks of the nearest pyproject.toml, else stratoq.examples)",
    )
    w.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish after SIGTERM before they are released",
    )
    w.add_argument(
        "--metrics-port",
        type=port,
        default=None,
        help="Prometheus /metrics port, for all --processes (default 9464 or env "
        "STRATOQ_METRICS_PORT; 0 turns metrics off)",
    )
    w.add_argument(
        "--metrics-host",
        default=os.environ.get("STRATOQ_METRICS_HOST") or "127.0.0.1",
        help="address /metrics binds to (default 127.0.0.1 or env STRATOQ_METRICS_HOST)",
    )
    w.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stratoq.core.priority import expand, parse_mode, parse_weights
    from stratoq.project import tasks_module
    from stratoq.runtime.supervisor import serve

    args.tasks = tasks_module(args.tasks, Path.cwd())
    settings = settings_from(args)
    if args.priority_mode is not None:
        settings = settings.with_(priority_mode=parse_mode(args.priority_mode, "--priority-mode"))
    if args.priority_weights is not None:
        weights = parse_weights(args.priority_weights, "--priority-weights")
        settings = settings.with_(priority_weights=weights)
    if args.prefetch is not None:
        settings = settings.with_(prefetch=args.prefetch)
    queues = [q.strip() for q in args.queues.split(",")] if args.queues else None
    for q in queues or []:
        # A logical queue (all its priorities) or one priority queue's key.
        if q not in settings.queues:
            raise UsageError(f"unknown queue {q!r}; configured: {', '.join(settings.queues)}")
    from stratoq.observability.prometheus import MetricsServer, PrometheusRecorder, multiprocess
    from stratoq.observability.queue_gauges import QueueWatch

    metrics_port = args.metrics_port
    if metrics_port is None:
        metrics_port = env_port("STRATOQ_METRICS_PORT", 9464)
    # Several poller processes share a PROMETHEUS_MULTIPROC_DIR; this process serves it.
    with multiprocess(args.processes > 1 and metrics_port > 0):
        recorder = PrometheusRecorder()
        services = services_for(settings, recorder)
        if metrics_port:
            try:
                server = MetricsServer(metrics_port, args.metrics_host, recorder)
            except OSError as exc:
                raise UsageError(
                    f"cannot serve metrics on {args.metrics_host}:{metrics_port}: "
                    f"{exc.strerror}; use --metrics-port (0 turns metrics off)"
                ) from None
            keys = list(settings.queues)
            server.watch(QueueWatch(services.transport, expand(keys, queues or keys)))
        return serve(services, args.concurrency, args.processes, queues, args.shutdown_grace)
