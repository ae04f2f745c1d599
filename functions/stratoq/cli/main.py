"""`stratoq` command line. Each command parses, calls the SDK or the core, and prints.

Exit codes: 0 done; 1 the task(s) failed or were not found; 2 bad usage or
configuration (with a sentence saying what to change); 3 the API refused the request.
Task and API commands talk to the HTTP API named by --api-url/--api-key, by
STRATOQ_API_URL/STRATOQ_API_KEY, or by the .stratoq/dev.json that `stratoq dev` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import urllib3
from pydantic import ValidationError

from stratoq.core.errors import StratoqError, UsageError
from stratoq.core.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    if getattr(args, "aws_endpoint_url", None):
        settings = settings.with_(aws_endpoint_url=args.aws_endpoint_url)
    if getattr(args, "tasks", None):
        settings = settings.with_(tasks_module=args.tasks)
    return settings


def _client(args: argparse.Namespace) -> Any:
    from stratoq.sdk.client import Client

    return Client(args.api_url, args.api_key, ca_bundle=args.ca_bundle)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# ------------------------------------------------------------------ commands
def cmd_dev(args: argparse.Namespace) -> int:
    import os

    from stratoq.local.dev import DevOptions, run

    return run(
        DevOptions(
            port=args.port,
            aws_port=args.aws_port,
            metrics_port=args.metrics_port,
            workers=args.workers,
            lambda_workers=args.lambda_workers,
            api_key=args.bootstrap_key or os.environ.get("STRATOQ_API_KEY") or None,
            tasks=args.tasks,
            state_file=Path(args.state_file),
            clock_speed=args.clock_speed,
            tls=args.tls,
            persist=args.persist,
        )
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from stratoq.core.priority import expand, parse_mode, parse_weights
    from stratoq.runtime.poller import serve

    settings = _settings(args)
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
    from stratoq.observability.metrics import Metrics
    from stratoq.observability.prometheus import MetricsServer, PrometheusRecorder, multiprocess
    from stratoq.observability.queue_gauges import QueueWatch
    from stratoq.services.app import Services

    port = args.metrics_port
    if port is None:
        port = _env_port("STRATOQ_METRICS_PORT", 9464)
    # Several poller processes share a PROMETHEUS_MULTIPROC_DIR; this process serves it.
    with multiprocess(args.processes > 1 and port > 0):
        recorder = PrometheusRecorder()
        services = Services(settings, metrics=Metrics([recorder]))
        if port:
            try:
                server = MetricsServer(port, args.metrics_host, recorder)
            except OSError as exc:
                raise UsageError(
                    f"cannot serve metrics on {args.metrics_host}:{port}: "
                    f"{exc.strerror}; use --metrics-port (0 turns metrics off)"
                ) from None
            keys = list(settings.queues)
            server.watch(QueueWatch(services.transport, expand(keys, queues or keys)))
        return serve(services, args.concurrency, args.processes, queues, args.shutdown_grace)


def cmd_top(args: argparse.Namespace) -> int:
    from stratoq.cli import top
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
            client = _client(args)
            queues = client.queues
            label = client.api_url
        except ConfigError:
            if not urls:
                raise
    if queues is None and not urls:
        raise UsageError("nothing to show: no API (--api-url/--api-key) and no --metrics-url")
    return top.run(
        queues,
        urls,
        interval=args.interval,
        once=args.once or args.json,
        as_json=args.json,
        label=label,
    )


def cmd_provision(args: argparse.Namespace) -> int:
    from stratoq.local.provision import provision

    settings = provision(_settings(args), stack=args.stack)
    for key, value in settings.to_env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_backfill_listing(args: argparse.Namespace) -> int:
    from stratoq.adapters import aws
    from stratoq.adapters.store import TaskStore

    settings = _settings(args)
    # Reads and writes keys only: no cipher is needed.
    store = TaskStore(aws.dynamodb(settings), settings.tasks_table)
    print(f"listed {store.backfill_listing()} task(s) in {settings.tasks_table}")
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload) if args.payload is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc.msg} at position {exc.pos}") from None
    options: dict[str, Any] = {"queue": args.queue}
    for key in (
        "priority",
        "delay_seconds",
        "run_at",
        "timeout_seconds",
        "max_attempts",
        "idempotency_key",
        "idempotency_window_seconds",
    ):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    if args.unique:
        options["unique"] = True
    client = _client(args)
    task = client.enqueue(args.name, payload, **options)
    if args.wait is not None:
        task = client.wait(task.id, timeout=args.wait)
    _print_json(task.model_dump(mode="json"))
    return 1 if task.status == "failed" else 0


def cmd_status(args: argparse.Namespace) -> int:
    task = _client(args).get(args.id)
    _print_json(task.model_dump(mode="json"))
    return 1 if task.status == "failed" else 0


def cmd_wait(args: argparse.Namespace) -> int:
    from stratoq.sdk.client import WaitTimeout

    client = _client(args)
    ids = list(dict.fromkeys(args.ids))
    deadline = time.monotonic() + args.timeout
    finished: dict[str, Any] = {}
    bar = _Progress(len(ids), enabled=(len(ids) > 1 and sys.stderr.isatty()) or args.progress)
    while len(finished) < len(ids):
        for tid in ids:
            if tid not in finished:
                task = client.get(tid)
                if task.status.final:
                    finished[tid] = task
                    bar.update(finished.values())
        if len(finished) < len(ids):
            if time.monotonic() > deadline:
                bar.close()
                left = len(ids) - len(finished)
                raise WaitTimeout(f"{left} task(s) not finished after {args.timeout:g} s")
            time.sleep(0.2)
    bar.close()
    tasks = [finished[i] for i in ids]
    if len(tasks) == 1:
        _print_json(tasks[0].model_dump(mode="json"))
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


def cmd_tasks(args: argparse.Namespace) -> int:
    tasks, token = _client(args).list(args.status, args.name, args.limit, args.next_token)
    if args.json:
        _print_json({"tasks": [t.model_dump(mode="json") for t in tasks], "next_token": token})
        return 0
    for t in tasks:
        print(f"{t.id}  {t.status.value:<9}  {t.attempts}/{t.max_attempts}  {t.name}")
    if token:
        print(f"more: --next-token {token}", file=sys.stderr)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    _print_json(_client(args).cancel(args.id).model_dump(mode="json"))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    if (args.id is None) == (not args.failed):
        raise UsageError("give a task id, or --failed to retry failed tasks in bulk")
    if args.id is not None:
        if args.name is not None or args.max is not None:
            raise UsageError("--name and --max go with --failed, not with a task id")
        _print_json(_client(args).retry(args.id).model_dump(mode="json"))
        return 0
    client = _client(args)
    left = args.max
    total = 0
    seen: set[str] = set()
    while True:
        # The API retries at most 1,000 per call; without --max, go on until none is left.
        answer = client.retry_failed(args.name, min(1000, left) if left is not None else 1000)
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


def cmd_dlq_list(args: argparse.Namespace) -> int:
    for q in _client(args).queues():
        dead = "-" if q.get("dead_letter") is None else q["dead_letter"]
        print(f"{q['queue']:<24} dead-letter {dead}")
    return 0


def cmd_dlq_redrive(args: argparse.Namespace) -> int:
    report = _client(args).redrive(args.queue, args.max)
    if args.json:
        _print_json(report)
    else:
        print(
            f"{report['queue']}: received {report['received']}, redriven {report['redriven']}, "
            f"resent {report['resent']}, dropped {report['dropped']}, left {report['left']}"
            + ("; more remain, run it again" if report["more"] else "")
        )
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    _print_json(_client(args).queues())
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.replace(",", " ").split() if s.strip()]
    created = _client(args).create_key(args.tenant, scopes, args.name)
    print(created["key"])
    print(
        f"key_id {created['key_id']}, tenant {created['tenant']}, scopes "
        f"{' '.join(created['scopes'])}: store the key now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    for k in _client(args).list_keys(args.tenant):
        state = "revoked" if k["revoked"] else "active"
        print(
            f"{k['key_id']}  {state:<7}  {k['tenant']:<16}  "
            f"{' '.join(k['scopes']):<28}  {k['name']}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    revoked = _client(args).revoke_key(args.key_id)
    print(f"revoked {revoked['key_id']} (tenant {revoked['tenant']})")
    return 0


def cmd_schedules_put(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload) if args.payload is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc.msg} at position {exc.pos}") from None
    from stratoq.core.models import TaskRequest
    from stratoq.core.schedules import parse

    parse(args.expression)  # the same validation the API applies, before any request
    task: dict[str, Any] = {"name": args.task, "payload": payload}
    for key in ("queue", "timeout_seconds", "max_attempts"):
        if getattr(args, key) is not None:
            task[key] = getattr(args, key)
    _print_json(
        _client(args).put_schedule(
            args.name, args.expression, TaskRequest.model_validate(task), not args.disabled
        )
    )
    return 0


def cmd_schedules_list(args: argparse.Namespace) -> int:
    for sched in _client(args).list_schedules():
        state = "enabled" if sched["enabled"] else "disabled"
        nxt = sched["next_runs"][0] if sched["next_runs"] else "-"
        print(
            f"{sched['name']:<24} {state:<8} {sched['expression']:<28} "
            f"next {nxt}  {sched['task']['name']}"
        )
    return 0


def cmd_schedules_show(args: argparse.Namespace) -> int:
    _print_json(_client(args).get_schedule(args.name))
    return 0


def cmd_schedules_delete(args: argparse.Namespace) -> int:
    _client(args).delete_schedule(args.name)
    print(f"deleted schedule {args.name}")
    return 0


def cmd_schedules_trigger(args: argparse.Namespace) -> int:
    _print_json(_client(args).trigger_schedule(args.name).model_dump(mode="json"))
    return 0


def cmd_schedules_preview(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from stratoq.core.schedules import parse

    after = datetime.now(UTC)
    if args.after:
        try:
            after = datetime.fromisoformat(args.after.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--after {args.after!r} is not an RFC 3339 time") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    for when in parse(args.expression).next_runs(after, args.count):
        print(when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from stratoq.local.clock import serve_clock

    return serve_clock(_settings(args), args.clock_speed)


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
    from stratoq.observability.metrics import Metrics
    from stratoq.observability.prometheus import PrometheusRecorder
    from stratoq.runtime.rabbitmq import RabbitBridge, RabbitOptions, check_url
    from stratoq.services.app import Services
    from stratoq.services.bridge import Bridge

    settings = _settings(args)
    # Long-running: its counters are on /metrics where the container entry point serves.
    enqueuer = Services(settings, metrics=Metrics([PrometheusRecorder()])).enqueuer
    bridge = Bridge(enqueuer, args.tenant or settings.bridge_tenant, "rabbitmq")
    options = RabbitOptions(check_url(url), args.queue, args.prefetch, args.linger)
    return RabbitBridge(bridge, options).run()


# -------------------------------------------------------------------- parser
def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _count(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def _env_port(name: str, default: int) -> int:
    """A port from the environment (a wrong value is refused, not ignored)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stratoq", description="stratoq: a serverless task queue.")
    p.add_argument("--aws-endpoint-url", help="AWS endpoint (an emulator); default: env or AWS")
    p.add_argument("--api-url", help="API URL (default: STRATOQ_API_URL or .stratoq/dev.json)")
    p.add_argument("--api-key", help="API key (default: STRATOQ_API_KEY or .stratoq/dev.json)")
    p.add_argument(
        "--ca-bundle",
        help="CA certificate file to trust for HTTPS (default: STRATOQ_CA_BUNDLE, or the "
        "ca_bundle `stratoq dev --tls` wrote to .stratoq/dev.json for its API)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("dev", help="run the whole stack on the embedded emulator")
    d.add_argument("--port", type=_port, default=8080, help="API port (default 8080)")
    d.add_argument("--aws-port", type=_port, default=0, help="emulator port (default: free)")
    d.add_argument("--metrics-port", type=_port, default=9464, help="0 turns metrics off")
    d.add_argument("--workers", type=_count, default=4, help="poller slots (default 4)")
    d.add_argument(
        "--lambda-workers",
        type=_count,
        default=0,
        help="Lambda-style SQS batch consumers per queue (default 0)",
    )
    d.add_argument(
        "--api-key",
        "--bootstrap-key",
        dest="bootstrap_key",
        help="fix the bootstrap admin key (default: env STRATOQ_API_KEY, else a new one)",
    )
    d.add_argument("--tasks", help="module(s) defining task handlers (default stratoq.examples)")
    d.add_argument("--state-file", default=".stratoq/dev.json")
    d.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="run the schedule clock this many times faster than real time (tests, demos)",
    )
    d.add_argument(
        "--tls",
        action="store_true",
        help="serve the API over HTTPS with a locally generated certificate "
        "(its CA goes to dev.json as ca_bundle; the SDK and CLI trust it from there)",
    )
    d.add_argument(
        "--persist",
        action="store_true",
        help="keep the emulator's state (tasks, queues, keys, schedules) across restarts: "
        "saved when the stack stops, restored at the next start (emulator.state next to "
        "--state-file)",
    )
    d.set_defaults(func=cmd_dev)

    w = sub.add_parser("worker", help="run container pollers until SIGTERM")
    w.add_argument("--concurrency", "-c", type=_positive, default=4, help="slots per process")
    w.add_argument("--processes", "-p", type=_positive, default=1, help="poller processes")
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
        type=_count,
        metavar="N",
        help="messages a poller may hold beyond its free slots, at most (it holds about a "
        "second's worth); 0 never (default env STRATOQ_PREFETCH or 10)",
    )
    w.add_argument("--tasks", help="module(s) defining task handlers")
    w.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish after SIGTERM before they are released",
    )
    w.add_argument(
        "--metrics-port",
        type=_port,
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

    pr = sub.add_parser("provision", help="create template.yaml's resources on an emulator")
    pr.add_argument("--stack", default="stratoq")
    pr.set_defaults(func=cmd_provision)

    bf = sub.add_parser(
        "backfill-listing",
        help="list tasks stored before the `listing` index (upgrade step, docs/deploy.md)",
    )
    bf.set_defaults(func=cmd_backfill_listing)

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
        type=_positive,
        metavar="SECONDS",
        help="how long the key holds (1 s to 7 days; default the deployment's, 24 h)",
    )
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
    t.add_argument("--limit", type=_positive, default=50)
    t.add_argument("--next-token", dest="next_token")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_tasks)

    c = sub.add_parser("cancel", help="cancel a task that has not started")
    c.add_argument("id")
    c.set_defaults(func=cmd_cancel)
    r = sub.add_parser("retry", help="run a failed task again (or, with --failed, many)")
    r.add_argument("id", nargs="?")
    r.add_argument("--failed", action="store_true", help="retry failed tasks, newest first")
    r.add_argument("--name", help="with --failed: only tasks of this name")
    r.add_argument("--max", type=_positive, help="with --failed: at most this many")
    r.set_defaults(func=cmd_retry)
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
        "--max", type=_positive, help="at most this many messages (default 1000; up to 10000)"
    )
    dlr.add_argument("--json", action="store_true")
    dlr.set_defaults(func=cmd_dlq_redrive)
    q = sub.add_parser("queues", help="queue depths")
    q.set_defaults(func=cmd_queues)
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

    sc = sub.add_parser("schedules", help="recurring tasks (needs an admin key)")
    scs = sc.add_subparsers(dest="schedules_command", required=True, metavar="ACTION")
    sp = scs.add_parser("put", help="create or replace a schedule")
    sp.add_argument("name")
    sp.add_argument("--expression", "-e", required=True, help="cron(...) or rate(...), UTC")
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
    sv.add_argument("--count", "-n", type=_positive, default=5)
    sv.add_argument("--after", help="start from this RFC 3339 time (default now)")
    sv.set_defaults(func=cmd_schedules_preview)

    sr = sub.add_parser("scheduler", help="fire schedule rules from an emulator (LocalStack, moto)")
    sr.add_argument("--clock-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    sr.set_defaults(func=cmd_scheduler)

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
        type=_positive,
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

    k = sub.add_parser("keys", help="API keys (needs an admin key)")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ks.add_parser("create", help="create a key; printed once")
    kc.add_argument("--tenant", required=True)
    kc.add_argument(
        "--scopes", default="tasks:read,tasks:write", help="tasks:read tasks:write admin"
    )
    kc.add_argument("--name", default="")
    kc.set_defaults(func=cmd_keys_create)
    kl = ks.add_parser("list", help="list keys (never the secrets)")
    kl.add_argument("--tenant")
    kl.set_defaults(func=cmd_keys_list)
    kr = ks.add_parser("revoke", help="revoke a key by its key_id")
    kr.add_argument("key_id")
    kr.set_defaults(func=cmd_keys_revoke)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from stratoq.sdk.client import ApiError, NotFound, WaitTimeout

    p = parser()
    args = p.parse_args(argv)
    try:
        return int(args.func(args))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'input'}: {err['msg']}"
            for err in exc.errors()
        )
        p.exit(2, f"stratoq: invalid input: {problems}\n")
    except NotFound as exc:
        p.exit(1, f"stratoq: {exc.message}\n")
    except ApiError as exc:
        p.exit(3, f"stratoq: the API refused: {exc}\n")
    except WaitTimeout as exc:
        p.exit(1, f"stratoq: {exc}\n")
    except StratoqError as exc:
        p.exit(2, f"stratoq: {exc}\n")
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        if isinstance(getattr(exc, "reason", exc), urllib3.exceptions.SSLError | ssl.SSLError):
            p.exit(
                2,
                "stratoq: cannot reach the API: its TLS certificate is not trusted; "
                "pass --ca-bundle (or set STRATOQ_CA_BUNDLE)\n",
            )
        p.exit(2, f"stratoq: cannot reach the API ({type(exc).__name__}); is it running?\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
