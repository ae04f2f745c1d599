"""Paced mode of the benchmark: `python -m loadtests.bench --rate 10 --n 300`.

One task per enqueue request, `rate` requests per second, `n` tasks, for each peer in
turn on the same emulator: stratoq on pollers, stratoq on the local Lambda path (the dev
stack's event source mapping), Celery without results, and Celery with its DynamoDB
result backend, task_track_started and late acks (the peer that keeps what stratoq
keeps). Per peer: enqueue-to-start and enqueue-to-finish p50/p99, and AWS requests per
task (idle receives included: at light load they are most of them).

Start is when the handler began (stratoq: the task's `started_at`; Celery: the task
records it); finish is when the outcome was recorded (stratoq: `finished_at`; Celery with
results: the result item's write time; Celery without: the handler's end, as nothing
more is recorded). Every time comes from this machine's clock.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench import ROOT, Emulator, _depth, _env, _per_task, _percentile

PEERS = ("stratoq", "stratoq-lambda", "celery", "celery-dynamodb")
# The pollers' and the local event source mapping's long-poll wait, as in the burst mode.
POLL_WAIT_SECONDS = 1


@dataclass
class PacedResult:
    peer: str
    n: int
    rate: float
    start_p50_ms: float = 0.0
    start_p99_ms: float = 0.0
    finish_p50_ms: float = 0.0
    finish_p99_ms: float = 0.0
    requests_per_task: dict[str, float] = field(default_factory=dict)


def positive_rate(text: str) -> float:
    """argparse type of --rate: tasks per second, a positive number."""
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(
            f"--rate must be a positive number of tasks per second, got {text!r}"
        )
    return rate


def latency_summary(rows: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    """p50/p99 in ms of start - sent and finish - sent, from (sent, start, finish) rows
    in seconds."""
    starts = [(start - sent) * 1000 for sent, start, _ in rows]
    finishes = [(finish - sent) * 1000 for sent, _, finish in rows]
    return {
        "start_p50_ms": round(_percentile(starts, 0.5), 1),
        "start_p99_ms": round(_percentile(starts, 0.99), 1),
        "finish_p50_ms": round(_percentile(finishes, 0.5), 1),
        "finish_p99_ms": round(_percentile(finishes, 0.99), 1),
    }


def pace(
    n: int,
    rate: float,
    send: Callable[[], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call `send` n times, the i-th at i / rate seconds after the first (a late call does
    not shift the ones after it, so the mean rate holds)."""
    start = clock()
    for i in range(n):
        ahead = start + i / rate - clock()
        if ahead > 0:
            sleep(ahead)
        send()


def _settle(sqs: Any, urls: Sequence[str], deadline_s: float = 120) -> None:
    deadline = time.time() + deadline_s
    while any(_depth(sqs, url)[1] for url in urls):
        if time.time() > deadline:
            raise SystemExit("the queues did not drain in time")
        time.sleep(1.0)  # each probe scans the queue in moto: probe rarely


# ------------------------------------------------------------------ stratoq
def run_stratoq(emu: Emulator, n: int, rate: float, lambda_path: bool, args: Any) -> PacedResult:
    from stratoq.adapters import aws
    from stratoq.core.clock import to_ms
    from stratoq.core.models import TaskRequest
    from stratoq.core.settings import Settings
    from stratoq.local.provision import provision
    from stratoq.services.app import Services

    settings = provision(
        Settings(
            aws_endpoint_url=emu.url,
            tasks_module="loadtests.tasks",
            poll_wait_seconds=POLL_WAIT_SECONDS,
        ),
        stack="bench",
    )
    core = Services(settings).enqueuer
    sqs = aws.sqs(settings)
    if lambda_path:
        command = ["-m", "loadtests.lambda_worker", str(args.processes)]
    else:
        command = ["-m", "stratoq", "worker", "-p", str(args.processes)]
        command += ["-c", str(args.concurrency)]
    workers = subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        env=_env(**settings.to_env(), STRATOQ_METRICS_PORT="0"),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # let the workers start before the clock runs
        # One task first, as the Celery peers get: nothing is timed starting up.
        warm = core.enqueue(TaskRequest(name="noop")).task.id
        _until(lambda: _succeeded(core, warm), "the warm-up task")
        _settle(sqs, [core.transport.url(q) for q in settings.queues])
        emu.counts(reset=True)
        ids: list[str] = []
        pace(n, rate, lambda: ids.append(core.enqueue(TaskRequest(name="noop")).task.id))
        _settle(sqs, [core.transport.url(q) for q in settings.queues])
        counts = emu.counts()
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(60)
    rows: list[tuple[float, float, float]] = []
    for task_id in ids:
        _until(lambda: _succeeded(core, task_id), f"task {task_id} to succeed")  # noqa: B023
        task = core.store.get(task_id)
        assert task is not None
        sent, began, done = (to_ms(t) for t in (task.created_at, task.started_at, task.finished_at))
        assert sent is not None and began is not None and done is not None
        rows.append((sent / 1000, began / 1000, done / 1000))
    peer = "stratoq-lambda" if lambda_path else "stratoq"
    return PacedResult(
        peer, n, rate, **latency_summary(rows), requests_per_task=_per_task(counts, n)
    )


# ------------------------------------------------------------------- celery
def run_celery(emu: Emulator, n: int, rate: float, results: bool, args: Any) -> PacedResult:
    import boto3

    host = emu.url.removeprefix("http://")
    latency_file = Path(tempfile.mkdtemp()) / "latency.log"
    extra = {"BENCH_BROKER": f"sqs://testing:testing@{host}"}
    extra["BENCH_LATENCY_FILE"] = str(latency_file)
    table = f"celerybench-results-{int(time.time())}"
    if results:
        # celery's DynamoDB backend takes an IP host as a local endpoint over http.
        extra["BENCH_RESULT_BACKEND"] = f"dynamodb://testing:testing@{host}/{table}"
    else:
        os.environ.pop("BENCH_RESULT_BACKEND", None)
    os.environ.update(extra)
    # The app is configured at import from the environment: import it afresh per peer.
    sys.modules.pop("loadtests.celery_app", None)
    from loadtests.celery_app import app, noop

    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "loadtests.celery_app", "worker"),
            *("--pool", "prefork", "--concurrency", str(args.processes * args.concurrency)),
            *("--without-mingle", "--without-gossip", "--without-heartbeat"),
            *("--loglevel", "WARNING", "-Q", "noop"),
        ],
        cwd=ROOT,
        env=_env(**extra),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    sqs = boto3.client("sqs", endpoint_url=emu.url, region_name="us-east-1")
    try:
        noop.apply_async(args=(time.time(),))  # creates the queue (and table); warms up
        url = sqs.get_queue_url(QueueName="celerybench-noop")["QueueUrl"]
        deadline = time.time() + 60
        while not (latency_file.exists() and latency_file.read_text()):
            if time.time() > deadline:
                raise SystemExit("the Celery worker did not start")
            time.sleep(0.2)
        _settle(sqs, [url])
        time.sleep(1)  # the warm-up's result write
        latency_file.unlink()
        emu.counts(reset=True)
        pace(n, rate, lambda: noop.apply_async(args=(time.time(),)))
        while len(_lines(latency_file)) < n:
            time.sleep(0.5)
        _settle(sqs, [url])
        counts = emu.counts()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)
        app.close()
    parsed = [line.split() for line in _lines(latency_file)]
    if results:
        wanted = {p[3] for p in parsed}
        written = _until(
            lambda: (w := _result_times(emu.url, table)).keys() >= wanted and w,
            f"every result to be written in {table}",
        )
        rows = [(float(p[0]), float(p[1]), written[p[3]]) for p in parsed]
    else:
        rows = [(float(p[0]), float(p[1]), float(p[2])) for p in parsed]
    peer = "celery-dynamodb" if results else "celery"
    return PacedResult(
        peer, n, rate, **latency_summary(rows), requests_per_task=_per_task(counts, n)
    )


def _until(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.time() + timeout
    while not (value := check()):
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)
    return value


def _succeeded(core: Any, task_id: str) -> bool:
    task = core.store.get(task_id)
    return task is not None and task.status.value == "succeeded"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _result_times(endpoint: str, table: str) -> dict[str, float]:
    """Task id -> when its SUCCESS result was written (the backend's own timestamp)."""
    import boto3

    db = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    out: dict[str, float] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = db.scan(**kwargs)
        for item in page["Items"]:
            # Keys read "b'celery-task-meta-<id>'" (celery writes the bytes' repr).
            key = re.search(r"celery-task-meta-([0-9a-f-]+)", item["id"]["S"])
            if key and b'"SUCCESS"' in item["result"]["B"]:
                out[key[1]] = float(item["timestamp"]["N"])
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --------------------------------------------------------------------- main
def run(emu: Emulator, args: Any) -> list[PacedResult]:
    """Every peer asked for, in turn, at args.rate for args.n[0] tasks; prints as it goes."""
    n, rate = args.n[0], args.rate
    wanted = [p for p in PEERS if not (args.skip_celery and p.startswith("celery"))]
    if getattr(args, "peers", None):
        wanted = [p for p in wanted if p in args.peers.split(",")]
    results: list[PacedResult] = []
    for peer in wanted:
        if peer.startswith("stratoq"):
            r = run_stratoq(emu, n, rate, peer == "stratoq-lambda", args)
        else:
            r = run_celery(emu, n, rate, peer == "celery-dynamodb", args)
        results.append(r)
        print_paced([r])
    return results


def print_paced(results: Sequence[PacedResult]) -> None:
    print(
        f"{'peer':<16} {'N':>5} {'rate/s':>7} {'start p50':>10} {'p99':>7} "
        f"{'finish p50':>11} {'p99':>7} {'receives/task':>14}"
    )
    for r in results:
        receives = sum(v for k, v in r.requests_per_task.items() if k.endswith("ReceiveMessage"))
        print(
            f"{r.peer:<16} {r.n:>5} {r.rate:>7g} {r.start_p50_ms:>10.1f} {r.start_p99_ms:>7.1f} "
            f"{r.finish_p50_ms:>11.1f} {r.finish_p99_ms:>7.1f} {receives:>14.2f}",
            flush=True,
        )
