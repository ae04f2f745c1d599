"""Benchmark: stratoq and Celery (kombu SQS) on one emulator, in one run.

    python -m loadtests.bench                    # N=2000, both peers, scaling table
    python -m loadtests.bench --n 20000 --skip-scaling
    python -m loadtests.bench --rate 10 --n 300  # paced: latency at light load (paced.py)

What it prints, per peer: enqueue tasks/s, end-to-end tasks/s (first enqueue to last
completion), p50/p99 enqueue-to-finish latency, the deepest queue seen, AWS requests per
task by action (counted at the emulator, so every process is included), the AWS
list-price cost per million tasks those requests imply, and CPU ms per task spent by the
emulator, the workers and the producer. Ratios stratoq/Celery come from the same run
(`--repeat K`: K pairs back to back per N, and their median). Both peers use the same
emulator process, producer shape (one thread) and worker shape (P processes x C
concurrent tasks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# AWS list prices, us-east-1, USD (checked for docs/benchmarks.md; change them here).
PRICES = {
    "sqs_per_million_requests": 0.40,  # standard queue, per 64 KB chunk
    "dynamodb_per_million_wru": 0.625,  # on-demand write request units (1 KB each)
    "dynamodb_per_million_rru": 0.125,  # on-demand read request units (4 KB, strong)
    "lambda_per_million_invocations": 0.20,
    "apigateway_rest_per_million_requests": 3.50,
    "kms_per_million_requests": 3.00,  # $0.03 per 10,000
}
# Write units per UpdateItem (claims and completions: items under 1 KB that touch no index
# key, as by-status holds failed tasks only). Creation is costed from the items the run
# left in the table (`_create_wru`): a task item, its `listing` index entry if it has
# one, and the listing pages of batches with theirs.
WRU_PER_UPDATE = 1
_PEERS = ("stratoq", "stratoq-lambda", "celery", "celery-dynamodb")  # loadtests/paced.py
# --repeat applies up to this N; larger runs take minutes each and drift less.
REPEAT_MAX_N = 5000


@dataclass
class Result:
    peer: str
    n: int
    processes: int
    concurrency: int
    enqueue_per_s: float = 0.0
    e2e_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_depth: int = 0
    requests_per_task: dict[str, float] = field(default_factory=dict)
    dynamodb_wru_per_task: float = 0.0
    cost_per_million: dict[str, float] = field(default_factory=dict)
    # CPU milliseconds per task, by whom: the emulator, the workers (every process of
    # theirs, children included) and the producer (this process).
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)


class Emulator:
    """The counting moto server in its own process (its own GIL, like a real service)."""

    def __init__(self, stock: bool = False, unfair: bool = False) -> None:
        self.stock = stock
        flags = [*(["--stock"] if stock else []), *(["--unfair"] if unfair else [])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loadtests.emulator", *flags],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise SystemExit("the emulator did not start")

    def counts(self, reset: bool = False) -> dict[str, int]:
        req = urllib.request.Request(  # noqa: S310 - loopback
            self.url + ("/__counts/reset" if reset else "/__counts"),
            method="POST" if reset else "GET",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return dict(json.loads(resp.read()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # per-task INFO lines would be measured too
    env.update(extra)
    return env


def _depth(sqs: Any, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    visible = int(attrs["ApproximateNumberOfMessages"])
    return visible, visible + int(attrs["ApproximateNumberOfMessagesNotVisible"]) + int(
        attrs["ApproximateNumberOfMessagesDelayed"]
    )


def _cpu_seconds(pid: int = 0, session: int | None = None) -> float:
    """CPU time (user + system, reaped children included) of one process or a session.

    Read from /proc, so it covers processes this harness did not start itself (a worker's
    slot children). Processes that exited unreaped by a live parent are not counted.
    """
    stats = (
        Path("/proc").glob("[0-9]*/stat") if session is not None else [Path(f"/proc/{pid}/stat")]
    )
    total = 0
    for stat in stats:
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited while we looked
        # fields[0] is state (field 3 of proc(5)); session is field 6, times 14-17.
        if session is None or int(fields[3]) == session:
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


class CpuClock:
    """CPU spent by the emulator, the workers' session and this process since start."""

    def __init__(self, emulator_pid: int, worker_session: int) -> None:
        self.emulator_pid = emulator_pid
        self.worker_session = worker_session
        self.start = self._now()

    def _now(self) -> tuple[float, float, float]:
        return (
            _cpu_seconds(pid=self.emulator_pid),
            _cpu_seconds(session=self.worker_session),
            time.process_time(),
        )

    def per_task(self, n: int) -> dict[str, float]:
        now = self._now()
        spent = [(b - a) * 1000 / n for a, b in zip(self.start, now, strict=True)]
        out = dict(zip(("emulator", "workers", "producer"), spent, strict=True))
        out["total"] = sum(spent)
        return {k: round(v, 2) for k, v in out.items()}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _per_task(counts: dict[str, int], n: int) -> dict[str, float]:
    # The harness's own depth probes are not the peers' work.
    return {
        k: round(v / n, 4)
        for k, v in sorted(counts.items())
        if not k.endswith(("GetQueueAttributes", "GetQueueUrl", "ListQueues"))
    }


def _create_wru(items: list[dict[str, Any]], n: int) -> float:
    """Write units per task spent creating tasks and listing pages (see adapters/store/).

    A write unit covers 1 KB of item; each item in the keys-only `listing` index costs one
    more. Task items here are under 1 KB (payload `{}` encrypted); a page's size is its
    ids (16 bytes each) plus about 100 bytes of other attributes and names.
    """
    from stratoq.adapters.store import PAGE_PREFIX

    units = 0
    for item in items:
        if item["pk"]["S"].startswith(PAGE_PREFIX):
            size = len(item["ids"]["B"]) + 100
            units += math.ceil(size / 1024) + 1
        else:
            units += 1 + ("listed" in item)
    return units / n


def _cost(per_task: dict[str, float], wru: float, lambda_batch: int | None) -> dict[str, float]:
    sqs = sum(v for k, v in per_task.items() if k.startswith("AmazonSQS."))
    kms = sum(v for k, v in per_task.items() if k.startswith("TrentService."))
    out = {
        "sqs": sqs * PRICES["sqs_per_million_requests"],
        "dynamodb": wru * PRICES["dynamodb_per_million_wru"],
        "kms": kms * PRICES["kms_per_million_requests"],
    }
    if lambda_batch:
        out["lambda_invocations"] = PRICES["lambda_per_million_invocations"] / lambda_batch
        out["api_gateway_batch_of_100"] = PRICES["apigateway_rest_per_million_requests"] / 100
    out["total"] = sum(out.values())
    return {k: round(v, 3) for k, v in out.items()}


# ------------------------------------------------------------------ stratoq
def run_stratoq(emu: Emulator, n: int, processes: int, concurrency: int) -> Result:
    from stratoq.adapters import aws
    from stratoq.core.settings import Settings
    from stratoq.local.provision import provision
    from stratoq.services.app import Services

    settings = provision(
        Settings(aws_endpoint_url=emu.url, tasks_module="loadtests.tasks", poll_wait_seconds=1),
        stack="bench",
    )
    core = Services(settings).enqueuer
    sqs = aws.sqs(settings)
    queue_url = core.transport.url("default")
    workers = subprocess.Popen(
        [sys.executable, "-m", "stratoq", "worker", "-p", str(processes), "-c", str(concurrency)],
        cwd=ROOT,
        env=_env(**settings.to_env(), STRATOQ_METRICS_PORT="0"),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return _measure_stratoq(
            emu, settings, core, sqs, queue_url, n, processes, concurrency, workers.pid
        )
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(60)


def _measure_stratoq(
    emu: Emulator,
    settings: Any,
    core: Any,
    sqs: Any,
    queue_url: str,
    n: int,
    processes: int,
    concurrency: int,
    worker_session: int,
) -> Result:
    from stratoq.adapters import aws
    from stratoq.adapters.store import PAGE_PREFIX
    from stratoq.core.models import TaskRequest

    time.sleep(4)  # let the pollers start (spawning slot processes) before the clock runs
    emu.counts(reset=True)
    result = Result("stratoq", n, processes, concurrency)
    cpu = CpuClock(emu.proc.pid, worker_session)
    start = time.time()
    for i in range(0, n, 100):
        core.enqueue_many([TaskRequest(name="noop") for _ in range(min(100, n - i))])
    result.enqueue_per_s = n / (time.time() - start)
    while True:
        visible, total = _depth(sqs, queue_url)
        result.max_depth = max(result.max_depth, visible)
        if total == 0:
            break
        time.sleep(1.0)  # each probe scans the queue in moto: probe rarely
    counts = emu.counts()
    result.cpu_ms_per_task = cpu.per_task(n)
    # Latency and the last completion come from the tasks' own records.
    db = aws.dynamodb(settings)
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": settings.tasks_table,
        "FilterExpression": "created_at >= :s",
        "ExpressionAttributeValues": {":s": {"N": str(to_ms_int(start) - 1)}},
        "ProjectionExpression": "pk, created_at, finished_at, #s, attempts, errors, listed, ids",
        "ExpressionAttributeNames": {"#s": "status"},
    }
    while True:
        page = db.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    create_wru = _create_wru(items, n)
    items = [i for i in items if not i["pk"]["S"].startswith(PAGE_PREFIX)]
    done = [i for i in items if i.get("status", {}).get("S") == "succeeded"]
    if len(done) != n:
        from collections import Counter

        states = Counter(i.get("status", {}).get("S") for i in items)
        odd = [i for i in items if i.get("status", {}).get("S") != "succeeded"][:3]
        dlq = core.transport.stats("default")
        raise SystemExit(
            f"stratoq: {len(done)} of {n} tasks succeeded: {dict(states)}; queue {dlq}; {odd}"
        )
    finished = [int(i["finished_at"]["N"]) for i in done]
    latencies = [int(i["finished_at"]["N"]) - int(i["created_at"]["N"]) for i in done]
    result.e2e_per_s = n / ((max(finished) - to_ms_int(start)) / 1000)
    result.p50_ms = _percentile([float(x) for x in latencies], 0.5)
    result.p99_ms = _percentile([float(x) for x in latencies], 0.99)
    result.requests_per_task = _per_task(counts, n)
    wru = create_wru + result.requests_per_task.get("DynamoDB.UpdateItem", 0) * WRU_PER_UPDATE
    result.dynamodb_wru_per_task = round(wru, 3)
    result.cost_per_million = _cost(result.requests_per_task, wru, lambda_batch=10)
    return result


def to_ms_int(t: float) -> int:
    return int(t * 1000)


# ------------------------------------------------------------------- celery
def run_celery(emu: Emulator, n: int, processes: int, concurrency: int) -> Result:
    host = emu.url.removeprefix("http://")
    broker = f"sqs://testing:testing@{host}"
    latency_file = Path(tempfile.mkdtemp()) / "latency.log"
    env = _env(BENCH_BROKER=broker, BENCH_LATENCY_FILE=str(latency_file))
    os.environ.update({"BENCH_BROKER": broker, "BENCH_LATENCY_FILE": str(latency_file)})
    from loadtests.celery_app import app, noop

    app.conf.broker_url = broker
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "loadtests.celery_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            str(processes * concurrency),
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
            "-Q",
            "noop",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return _measure_celery(emu, n, processes, concurrency, latency_file, noop, worker.pid)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)


def _measure_celery(
    emu: Emulator,
    n: int,
    processes: int,
    concurrency: int,
    latency_file: Path,
    noop: Any,
    worker_session: int,
) -> Result:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=emu.url, region_name="us-east-1")
    noop.apply_async(args=(time.time(),))  # creates the queue; waits for the worker
    queue_url = sqs.get_queue_url(QueueName="celerybench-noop")["QueueUrl"]
    deadline = time.time() + 60
    while _depth(sqs, queue_url)[1] and time.time() < deadline:
        time.sleep(1.0)  # each probe scans the queue in moto: probe rarely
    latency_file.unlink(missing_ok=True)
    emu.counts(reset=True)
    result = Result("celery", n, processes, concurrency)
    cpu = CpuClock(emu.proc.pid, worker_session)
    start = time.time()
    for _ in range(n):
        noop.apply_async(args=(time.time(),))
    result.enqueue_per_s = n / (time.time() - start)
    while True:
        visible, total = _depth(sqs, queue_url)
        result.max_depth = max(result.max_depth, visible)
        lines = latency_file.read_text().splitlines() if latency_file.exists() else []
        if total == 0 and len(lines) >= n:
            break
        time.sleep(1.0)  # each probe scans the queue in moto: probe rarely
    counts = emu.counts()
    result.cpu_ms_per_task = cpu.per_task(n)
    # Lines are "sent started done id" (loadtests/celery_app.py): sent and done here.
    rows = [(float(p[0]), float(p[2])) for p in (line.split() for line in lines)]
    result.e2e_per_s = n / (max(done for _, done in rows) - start)
    latencies = [(done - sent) * 1000 for sent, done in rows]
    result.p50_ms = _percentile(latencies, 0.5)
    result.p99_ms = _percentile(latencies, 0.99)
    result.requests_per_task = _per_task(counts, n)
    result.cost_per_million = _cost(result.requests_per_task, 0.0, lambda_batch=None)
    return result


# --------------------------------------------------------------------- main
def _print(results: list[Result]) -> None:
    head = (
        f"{'peer':<8} {'N':>6} {'PxC':>5} {'enqueue/s':>10} {'e2e/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'depth':>6} {'$/M':>7}"
    )
    print(head)
    for r in results:
        print(
            f"{r.peer:<8} {r.n:>6} {r.processes}x{r.concurrency:<3} {r.enqueue_per_s:>10.0f} "
            f"{r.e2e_per_s:>8.1f} {r.p50_ms:>8.0f} {r.p99_ms:>8.0f} {r.max_depth:>6} "
            f"{r.cost_per_million.get('total', 0):>7.3f}"
        )
    for r in results:
        print(f"\n{r.peer} N={r.n} {r.processes}x{r.concurrency}: AWS requests per task")
        for k, v in r.requests_per_task.items():
            print(f"  {k:<40} {v:.4f}")
        if r.dynamodb_wru_per_task:
            print(f"  DynamoDB write units per task: {r.dynamodb_wru_per_task}")
        print(f"  cost per million tasks (USD): {r.cost_per_million}")
        print(f"  CPU ms per task: {r.cpu_ms_per_task}")


def _positive_rate(text: str) -> float:
    from loadtests.paced import positive_rate

    return positive_rate(text)


def _main_paced(emu: Emulator, args: argparse.Namespace) -> None:
    from loadtests.paced import print_paced, run

    try:
        results = run(emu, args)
    finally:
        emu.stop()
    print("\n== summary (paced) ==")
    print_paced(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"paced": [asdict(r) for r in results]}, indent=2))
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[2000])
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--scaling", default="1,2,4", help="poller process counts ('' to skip)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help=f"stratoq/Celery pairs per N up to {REPEAT_MAX_N} (the median ratio is printed)",
    )
    p.add_argument("--skip-celery", action="store_true")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--stock", action="store_true", help="stock moto (no local.moto_patches)")
    p.add_argument(
        "--rate",
        type=_positive_rate,
        help="paced mode (loadtests/paced.py): one task per request, this many per second, "
        "for the first --n tasks; latency per peer instead of throughput",
    )
    p.add_argument("--peers", help=f"paced mode: only these, comma-separated ({', '.join(_PEERS)})")
    args = p.parse_args(argv)
    for key, value in _env().items():
        if key.startswith("AWS_"):
            os.environ.setdefault(key, value)

    emu = Emulator(stock=args.stock)
    if args.rate:
        _main_paced(emu, args)
        return
    results: list[Result] = []
    try:
        ratios: dict[int, list[float]] = {}
        for n in args.n:
            # Pairs back to back: the machine drifts (Celery alone has varied by 30%
            # between runs), so each ratio compares two runs minutes apart.
            for _ in range(args.repeat if n <= REPEAT_MAX_N else 1):
                ours = run_stratoq(emu, n, args.processes, args.concurrency)
                results.append(ours)
                _print([ours])
                if args.skip_celery:
                    continue
                theirs = run_celery(emu, n, args.processes, args.concurrency)
                results.append(theirs)
                _print([theirs])
                ratios.setdefault(n, []).append(ours.e2e_per_s / theirs.e2e_per_s)
                print(
                    f"N={n}: stratoq/celery end-to-end {ratios[n][-1]:.2f}x, "
                    f"enqueue {ours.enqueue_per_s / theirs.enqueue_per_s:.2f}x",
                    flush=True,
                )
        scaling: list[Result] = []
        if args.scaling and not args.skip_scaling:
            for procs in [int(x) for x in args.scaling.split(",")]:
                scaling.append(run_stratoq(emu, args.n[0], procs, args.concurrency))
    finally:
        emu.stop()
    print("\n== summary ==")
    _print(results)
    for n, pair in ratios.items():
        listed = ", ".join(f"{r:.2f}x" for r in pair)
        print(f"N={n}: stratoq/celery end-to-end {listed} (median {statistics.median(pair):.2f}x)")
    if scaling:
        print("\nhorizontal scaling (stratoq pollers)")
        for r in scaling:
            print(f"  {r.processes} process(es) x {r.concurrency}: {r.e2e_per_s:.1f} tasks/s")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"results": [asdict(r) for r in results + scaling], "prices": PRICES}, indent=2
            )
        )
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
