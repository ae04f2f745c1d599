"""Chaos benchmark: AWS faults and pollers killed -9; nothing lost, nothing applied twice.

    python -m loadtests.chaos --tasks 5000 --fault-rate 0.05 --kill-every 3 [--seed N]

One run on a fresh emulator (loadtests/emulator.py: moto with stratoq's patches, the
fault injector of stratoq/local/faults.py and a request counter) provisions a stack,
starts 4 pollers (`stratoq worker`), injects every fault kind, mixed evenly, into the
given share of DynamoDB and SQS calls, enqueues N `effect` tasks (loadtests/tasks.py: a
conditional put per task, logged, so an effect applied twice shows) through the core
Enqueuer, retrying a batch whose enqueue fails, and SIGKILLs a random poller about every
--kill-every seconds (restarting it) until every task it enqueued is final or
--max-wait passes. A baseline run of the same size and kills without faults comes first
(--no-baseline skips it): the difference in AWS requests per task is what the faults
cost. The report is a table (and --json); the exit code is 1 if any goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.bench import ROOT, Emulator, _env
from loadtests.emulator import HARNESS_AGENT

FAULT_KINDS = ("throttle", "capacity", "500", "503", "reset", "delay", "lost")
POLLERS = 4
BATCH = 100
FINAL = {"succeeded", "failed", "cancelled"}


def fault_spec(rate: float) -> str:
    """Rules giving each kind an equal share of `rate` of DynamoDB's and SQS's calls.

    The injector tries rules in order and the first that draws its rate applies, so rule
    i draws s / (1 - i*s) (s = rate / kinds): each kind then faults exactly s of calls.
    """
    share = rate / len(FAULT_KINDS)
    rules = []
    for service in ("dynamodb", "sqs"):
        for i, kind in enumerate(FAULT_KINDS):
            rules.append(f"{service}:*={kind}:{share / (1 - i * share):.6f}")
    return ",".join(rules)


@dataclass
class Run:
    tasks: int
    fault_rate: float
    seed: int
    kills: int = 0
    enqueue_seconds: float = 0.0
    seconds: float = 0.0
    enqueue_failures: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    applied_twice: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reruns_absorbed: int = 0
    untracked_tasks: int = 0

    def per_task(self, polls: bool = True) -> float:
        """AWS requests per task; `polls=False` leaves out ReceiveMessage, whose idle
        long polls grow with the run's wall time rather than with its work."""
        counted = (v for k, v in self.requests.items() if polls or "ReceiveMessage" not in k)
        return sum(counted) / self.tasks

    def ok(self) -> bool:
        return not (self.lost or self.applied_twice or self.not_final or self.failed)


def _harness(kind: str, url: str) -> Any:
    """A client for the harness's own probes: uncounted, retried through the faults."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 10, "mode": "standard"}, user_agent_extra=HARNESS_AGENT
    )
    return boto3.client(kind, endpoint_url=url, region_name="us-east-1", config=config)


class Pollers:
    """POLLERS `stratoq worker` processes, each in its own session to kill it whole."""

    def __init__(self, env: dict[str, str], concurrency: int, logs: Path) -> None:
        self.env, self.concurrency, self.logs = env, concurrency, logs
        self.procs = [self._start() for _ in range(POLLERS)]

    def _start(self) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.logs / f"poller-{time.monotonic_ns()}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stratoq", "worker", "-c", str(self.concurrency)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return proc, log

    def kill_one(self, rng: random.Random) -> None:
        i = rng.randrange(len(self.procs))
        proc, _ = self.procs[i]
        os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: its leases just lapse
        proc.wait(30)
        self.procs[i] = self._start()

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


class Killer(threading.Thread):
    """Kills a random poller every `every` seconds (jittered +-50%) until stopped."""

    def __init__(self, pollers: Pollers, every: float, rng: random.Random, most: int) -> None:
        super().__init__(daemon=True)
        self.pollers, self.every, self.rng, self.most = pollers, every, rng, most
        self.halt = threading.Event()
        self.kills = 0

    def run(self) -> None:
        while self.kills < self.most and not self.halt.wait(
            self.every * self.rng.uniform(0.5, 1.5)
        ):
            self.pollers.kill_one(self.rng)
            self.kills += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(60)


def _scan(db: Any, table: str, projection: str, names: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ProjectionExpression": projection}
    if names:
        kwargs["ExpressionAttributeNames"] = names
    while True:
        page = db.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _statuses(db: Any, table: str) -> dict[str, str]:
    """Task id -> status of every task item (listing pages have no status)."""
    items = _scan(db, table, "pk, #s", {"#s": "status"})
    return {i["pk"]["S"]: i["status"]["S"] for i in items if "status" in i}


def _enqueue(core: Any, run: Run, payload: dict[str, str]) -> list[str]:
    """Enqueue run.tasks effect tasks; a batch whose enqueue fails is counted and retried.

    Only ids an enqueue returned are tracked: a failed batch may have stored some of its
    tasks (they run, untracked) or left messages without tasks (dropped as orphans).
    """
    from stratoq.core.models import TaskRequest

    failures: Counter[str] = Counter()
    ids: list[str] = []
    for start in range(0, run.tasks, BATCH):
        batch = [TaskRequest(name="effect", payload=payload)] * min(BATCH, run.tasks - start)
        for _ in range(50):
            try:
                ids.extend(e.task.id for e in core.enqueue_many(batch))
                break
            except Exception as exc:  # any failure: counted by kind, then retried
                failures[type(exc).__name__] += 1
                time.sleep(0.5)
        else:
            raise SystemExit(f"enqueue kept failing: {dict(failures)}")
    run.enqueue_failures = dict(failures)
    return ids


def run_once(n: int, rate: float, kill_every: float, seed: int, args: argparse.Namespace) -> Run:
    from stratoq.core.settings import Settings
    from stratoq.local.faults import fault_state, set_faults
    from stratoq.local.provision import provision
    from stratoq.services.app import Services

    run = Run(n, rate, seed)
    rng = random.Random(seed)  # nosec B311: not crypto
    emu = Emulator()
    logs = Path(tempfile.mkdtemp(prefix="stratoq-chaos-"))
    pollers: Pollers | None = None
    killer: Killer | None = None
    try:
        settings = provision(
            Settings(
                aws_endpoint_url=emu.url,
                tasks_module="loadtests.tasks",
                poll_wait_seconds=1,
                lease_seconds=args.lease_seconds,
            ),
            stack="chaos",
        )
        db = _harness("dynamodb", emu.url)
        effects = "chaos-effects"
        db.create_table(
            TableName=effects,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        effect_log = logs / "effects.log"
        pollers = Pollers(
            _env(**settings.to_env(), STRATOQ_METRICS_PORT="0"), args.concurrency, logs
        )
        deadline = time.monotonic() + 60
        # Their INFO lines are off (as in bench.py); a poller polling has started.
        while emu.counts().get("AmazonSQS.ReceiveMessage", 0) < POLLERS:
            if time.monotonic() > deadline:
                raise SystemExit(f"the pollers did not start; logs in {logs}")
            time.sleep(0.2)
        core = Services(settings).enqueuer
        emu.counts(reset=True)
        if rate:
            set_faults(emu.url, fault_spec(rate), seed)
        began = time.monotonic()
        killer = Killer(pollers, kill_every, rng, args.max_kills)
        killer.start()
        ids = _enqueue(core, run, {"table": effects, "log": str(effect_log)})
        run.enqueue_seconds = time.monotonic() - began
        deadline = time.monotonic() + args.max_wait
        while time.monotonic() < deadline:
            # Not the queue's depth: messages of failed enqueues stay there (orphans)
            # until workers drop them after STRATOQ_ORPHAN_GRACE_SECONDS.
            statuses = _statuses(db, settings.tasks_table)
            if all(statuses.get(i) in FINAL for i in ids):
                break
            time.sleep(1 if n <= 500 else 3)  # a scan of every task is not free
        run.seconds = time.monotonic() - began
        killer.stop()
        run.kills = killer.kills
        run.requests = emu.counts()
        state = fault_state(emu.url)
        set_faults(emu.url, "")
        for rule in state["rules"]:
            run.faults[rule["kind"]] = run.faults.get(rule["kind"], 0) + rule["injected"]
        # Faults off and requests counted: the verdict reads the decrypted tasks.
        stored = core.store.get_many(ids)
        run.untracked_tasks = len(set(_statuses(db, settings.tasks_table)) - set(ids))
        _judge(run, ids, stored, db, effects, effect_log)
    finally:
        if killer is not None:
            killer.stop()  # first: it would restart a poller stopped under it
        if pollers is not None:
            pollers.stop()
        emu.stop()
    if run.ok():
        shutil.rmtree(logs, ignore_errors=True)  # kept, and named, when a goal is missed
    else:
        print(f"poller logs and the effects log: {logs}", flush=True)
    return run


def _judge(run: Run, ids: list[str], tasks: dict[str, Any], db: Any, table: str, log: Path) -> None:
    rows = {i["pk"]["S"]: i["token"]["S"] for i in _scan(db, table, "pk, #t", {"#t": "token"})}
    tokens: dict[str, set[str]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        what, tid, token = line.split()
        if what == "applied":
            tokens.setdefault(tid, set()).add(token)
        else:
            run.reruns_absorbed += 1
    status = {i: tasks[i].status.value if i in tasks else "missing" for i in ids}
    run.statuses = dict(Counter(status.values()))
    for i in ids:
        if status[i] == "missing" or (status[i] == "succeeded" and i not in rows):
            run.lost.append(i)  # no task record, or done without its effect
        elif status[i] not in FINAL:
            run.not_final.append(i)
        elif status[i] != "succeeded":
            run.failed.append(i)
        # Two attempts' own puts, or a recorded outcome naming another application than
        # the row's: the effect was applied twice, or the wrong attempt's outcome kept.
        if len(tokens.get(i, ())) > 1 or (
            status[i] == "succeeded" and tasks[i].result != rows.get(i)
        ):
            run.applied_twice.append(i)


def _table(runs: list[Run]) -> list[str]:
    chaos = runs[-1]
    base = runs[0] if len(runs) > 1 else None
    rows = [("tasks enqueued (tracked)", f"{chaos.tasks}")]
    failures = ", ".join(f"{k} {v}" for k, v in sorted(chaos.enqueue_failures.items()))
    rows.append(("enqueue batches failed and retried", failures or "0"))
    kills = f"{chaos.kills}" + (f" (baseline {base.kills})" if base else "")
    rows.append(("pollers killed -9", kills))
    for kind in FAULT_KINDS:
        rows.append((f"faults injected: {kind}", f"{chaos.faults.get(kind, 0)}"))
    rows.append(("faults injected: total", f"{sum(chaos.faults.values())}"))
    rows.append(("**tasks lost** (goal 0)", f"{len(chaos.lost)}"))
    rows.append(("**effects applied twice** (goal 0)", f"{len(chaos.applied_twice)}"))
    rows.append(("**not final within the wait** (goal 0)", f"{len(chaos.not_final)}"))
    rows.append(("failed or cancelled", f"{len(chaos.failed)}"))
    rows.append(("re-runs absorbed by the effect's conditional put", f"{chaos.reruns_absorbed}"))
    rows.append(("tasks stored by failed enqueues (untracked)", f"{chaos.untracked_tasks}"))
    rows.append(("AWS requests per task, with faults", f"{chaos.per_task():.2f}"))
    if base is not None:
        extra = chaos.per_task() - base.per_task()
        rows.append(("AWS requests per task, baseline (no faults)", f"{base.per_task():.2f}"))
        rows.append(
            ("extra AWS requests per task", f"{extra:+.2f} ({extra / base.per_task():+.1%})")
        )
        extra = chaos.per_task(polls=False) - base.per_task(polls=False)
        rows.append(
            (
                "extra AWS requests per task, ReceiveMessage left out",
                f"{extra:+.2f} ({extra / base.per_task(polls=False):+.1%})",
            )
        )
        rows.append(("wall time, baseline", f"{base.seconds:.0f} s"))
    rows.append(("wall time, with faults", f"{chaos.seconds:.0f} s"))
    width = max(len(r[0]) for r in rows)
    out = [f"| {'measure':<{width}} | value |", f"| {'-' * width} | ----- |"]
    out.extend(f"| {name:<{width}} | {value} |" for name, value in rows)
    return out


def _per_action(run: Run) -> dict[str, float]:
    return {k: round(v / run.tasks, 3) for k, v in sorted(run.requests.items())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=5000)
    p.add_argument("--fault-rate", type=float, default=0.05, help="share of AWS calls faulted")
    p.add_argument("--kill-every", type=float, default=3.0, help="seconds between kills")
    p.add_argument("--max-kills", type=int, default=10**9, help="stop killing after this many")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--concurrency", type=int, default=4, help="slots per poller")
    p.add_argument("--lease-seconds", type=int, default=5)
    p.add_argument("--max-wait", type=float, default=600, help="seconds after the enqueue")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-fault run")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.tasks < 1 or not 0 <= args.fault_rate < 1 or args.kill_every <= 0:
        p.error("--tasks must be positive, --fault-rate in [0, 1), --kill-every positive")
    for key, value in _env().items():
        if key.startswith("AWS_"):
            os.environ.setdefault(key, value)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    runs: list[Run] = []
    if not args.no_baseline:
        runs.append(run_once(args.tasks, 0.0, args.kill_every, seed, args))
        print(f"baseline: {runs[-1].per_task():.2f} AWS requests per task", flush=True)
    runs.append(run_once(args.tasks, args.fault_rate, args.kill_every, seed, args))
    chaos = runs[-1]
    print(
        f"\nchaos benchmark: {args.tasks} tasks, {args.fault_rate:.0%} of DynamoDB and SQS "
        f"calls faulted, a poller killed -9 every ~{args.kill_every:g} s, seed {seed}\n"
    )
    print("\n".join(_table(runs)))
    for run in runs:
        label = "with faults" if run.fault_rate else "baseline"
        print(f"\nAWS requests per task by action, {label}: {_per_action(run)}")
    for name in ("lost", "applied_twice", "not_final", "failed"):
        if getattr(chaos, name):
            print(f"{name}: {getattr(chaos, name)[:10]}")
    print(f"\nmachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0 if chaos.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
