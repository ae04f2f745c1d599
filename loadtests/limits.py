"""Benchmark of concurrency and rate limits (issue 19) on the embedded emulator, 4 pollers.

    python -m loadtests.limits concurrency   # limit 2 per key, 500 tasks, pollers killed -9
    python -m loadtests.limits rate          # one 10/s limit held over 60 s
    python -m loadtests.limits cost          # AWS requests per task with and without limits

Each poller is its own `stratoq worker -c 2` process group, so `concurrency` can kill
one with SIGKILL (slot processes included) and start a new one. Tasks (loadtests.tasks
`span`) write their own start and end times (CLOCK_MONOTONIC, one clock for every
process) with their poller's process group; a span cut by a kill ends at the kill.
Figures go to docs/benchmarks.md ("Flow control").
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from loadtests.bench import ROOT, Emulator, _env, _per_task

POLLERS = 4


class Pollers:
    """`count` pollers of `slots` slots each, each a process group of its own."""

    def __init__(self, settings: Any, count: int, slots: int, **env: str) -> None:
        self._env = _env(**{**settings.to_env(), "STRATOQ_METRICS_PORT": "0", **env})
        self._slots = slots
        self.procs = [self._start() for _ in range(count)]
        self.killed: dict[int, int] = {}  # process group -> CLOCK_MONOTONIC ns of the kill

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "stratoq", "worker", "-c", str(self._slots)],
            cwd=ROOT,
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill_one(self, rng: random.Random) -> None:
        """SIGKILL a random poller with its slot processes, and start a new one."""
        i = rng.randrange(len(self.procs))
        proc = self.procs[i]
        self.killed[proc.pid] = time.monotonic_ns()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        self.procs[i] = self._start()

    def stop(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(60)


def _stack(emu: Emulator, name: str) -> tuple[Any, Any]:
    from stratoq.core.settings import Settings
    from stratoq.local.provision import provision
    from stratoq.services.app import Services

    settings = provision(
        Settings(aws_endpoint_url=emu.url, tasks_module="loadtests.tasks", poll_wait_seconds=1),
        stack=name,
    )
    return settings, Services(settings).enqueuer


def _spans(path: Path, killed: dict[int, int]) -> list[tuple[str, int, int]]:
    """(task id, start ns, end ns) of every attempt that started; one cut by a kill of its
    poller ends at the kill."""
    starts: dict[tuple[str, str], tuple[int, int]] = {}
    ends: dict[tuple[str, str], int] = {}
    for line in path.read_text().splitlines():
        kind, task_id, attempt, group, ns = line.split()
        if kind == "start":
            starts[(task_id, attempt)] = (int(group), int(ns))
        else:
            ends[(task_id, attempt)] = int(ns)
    out = []
    for key, (group, start) in starts.items():
        end = ends.get(key, killed.get(group))
        if end is None:
            raise SystemExit(f"attempt {key} never ended and its poller was not killed")
        out.append((key[0], start, end))
    return out


def _peak(spans: list[tuple[str, int, int]]) -> int:
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def _ends(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.startswith("end"))


def _wait_final(core: Any, ids: list[str], timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        time.sleep(2)
        pending = [i for i in pending if not (t := core.store.get(i)) or not t.status.final]
    if pending:
        raise SystemExit(f"{len(pending)} tasks not final after {timeout} s")
    return [core.store.get(i) for i in ids]


def concurrency(emu: Emulator, args: argparse.Namespace) -> None:
    from stratoq.core.models import TaskRequest

    settings, core = _stack(emu, "limits-c")
    log = Path(tempfile.mkdtemp()) / "spans.log"
    keys = [f"customer-{k}" for k in range(args.keys)]
    requests = [
        TaskRequest(
            name="span",
            payload={"path": str(log), "sleep": args.sleep},
            concurrency_key=keys[i % len(keys)],
            max_concurrency=args.limit,
        )
        for i in range(args.n)
    ]
    rng = random.Random(args.seed)
    pollers = Pollers(settings, POLLERS, 2, STRATOQ_LEASE_SECONDS=str(args.lease))
    try:
        time.sleep(4)  # the pollers start (spawning slot processes)
        started = time.monotonic()
        ids = [
            r.task.id
            for i in range(0, args.n, 100)
            for r in core.enqueue_many(requests[i : i + 100])
        ]
        key_of = {tid: keys[i % len(keys)] for i, tid in enumerate(ids)}
        kills = 0
        while time.monotonic() - started < args.kill_for:
            time.sleep(rng.uniform(args.kill_every / 2, args.kill_every * 1.5))
            pollers.kill_one(rng)
            kills += 1
        tasks = _wait_final(core, ids, 600)
        elapsed = time.monotonic() - started
    finally:
        pollers.stop()
    spans = _spans(log, pollers.killed)
    by_key: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for span in spans:
        by_key[key_of[span[0]]].append(span)
    peaks = {k: _peak(v) for k, v in by_key.items()}
    statuses = Counter(t.status.value for t in tasks)
    ends = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("end")
    )
    print(
        f"concurrency: {args.n} tasks, {len(keys)} keys of limit {args.limit}, {POLLERS} pollers"
        f" x 2 slots, lease {args.lease} s, {kills} pollers killed -9 in {args.kill_for} s"
    )
    print(f"  elapsed {elapsed:.1f} s; statuses {dict(statuses)}")
    print(
        f"  highest concurrency per key: {max(peaks.values())} (per key {sorted(peaks.values())})"
    )
    print(
        f"  attempts > 1 (taken over after a kill): {sum(t.attempts > 1 for t in tasks)};"
        f" handlers that ran to the end twice: {sum(c > 1 for c in ends.values())};"
        f" succeeded once each: {statuses.get('succeeded', 0) == args.n}"
    )


def rate(emu: Emulator, args: argparse.Namespace) -> None:
    from stratoq.core.models import TaskRequest

    settings, core = _stack(emu, "limits-r")
    log = Path(tempfile.mkdtemp()) / "spans.log"
    per_s = float(args.rate)
    n = int(per_s * (args.seconds + 5))
    request = TaskRequest(
        name="span", payload={"path": str(log)}, rate_limit=f"{args.rate}/s", rate_limit_key="api"
    )
    pollers = Pollers(settings, POLLERS, 2)
    try:
        # Every poller up first (slot processes spawned): the tokens are taken at the
        # enqueue, and a task whose token finds no worker starts late, with later ones.
        time.sleep(4)
        probe = TaskRequest(name="span", payload={"path": str(log.with_name("probes.log"))})
        _wait_final(core, [r.task.id for r in core.enqueue_many([probe] * 8)], 120)
        ids = [
            r.task.id
            for i in range(0, n, 100)
            for r in core.enqueue_many([request] * min(100, n - i))
        ]
        tasks = _wait_final(core, ids, args.seconds * 3 + 120)
    finally:
        pollers.stop()
    starts = sorted(
        int(line.split()[4]) / 1e9
        for line in log.read_text().splitlines()
        if line.startswith("start")
    )
    first = starts[0]
    windows = []
    for w in range(args.seconds // 10):
        a = first + 10 * w
        windows.append(sum(1 for s in starts if a <= s < a + 10) / 10)
    busiest = max(sum(1 for s in starts if a <= s < a + 1) for a in starts)
    # Every 10 s window that begins at a start and ends by the last: the strict reading.
    sliding = [
        sum(1 for s in starts if a <= s < a + 10) / 10 for a in starts if a + 10 <= starts[-1]
    ]
    print(f"rate: {n} tasks sharing {args.rate}/s, {POLLERS} pollers x 2 slots")
    print(
        f"  starts per second in each 10 s window from the first: {[round(w, 1) for w in windows]}"
    )
    print(f"  any 10 s window beginning at a start: {min(sliding):.1f} to {max(sliding):.1f}/s")
    print(f"  overall {(len(starts) - 1) / (starts[-1] - first):.2f}/s; busiest 1 s: {busiest}")
    print(f"  attempts per task: {dict(Counter(t.attempts for t in tasks))}")


def cost(emu: Emulator, args: argparse.Namespace) -> None:
    """AWS requests per task, counted at the emulator, without and with limits (none
    waiting: a limit above the pollers' slots, a rate above their pace)."""
    from stratoq.core.models import TaskRequest

    settings, core = _stack(emu, "limits-cost")
    log = Path(tempfile.mkdtemp()) / "spans.log"
    base = {"name": "span", "payload": {"path": str(log)}}
    runs = {
        "no limits": TaskRequest(**base),
        "concurrency_key, limit 50": TaskRequest(**base, concurrency_key="k", max_concurrency=50),
        "rate_limit 10000/s": TaskRequest(**base, rate_limit="10000/s"),
    }
    pollers = Pollers(settings, POLLERS, 2)
    try:
        time.sleep(4)
        for label, request in runs.items():
            emu.counts(reset=True)
            done = _ends(log) + args.n
            # Paced (batches of 10, at about the pollers' pace): requests per task in
            # normal running, not a backlog's.
            for i in range(0, args.n, 10):
                core.enqueue_many([request] * min(10, args.n - i))
                time.sleep(0.3)
            # Watched in the tasks' own log, not the store: no request of the harness's.
            deadline = time.monotonic() + 300
            while _ends(log) < done and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(3)  # the outcomes are recorded and the messages deleted
            print(f"{label}: {_per_task(emu.counts(), args.n)}")
    finally:
        pollers.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("concurrency")
    c.add_argument("--n", type=int, default=500)
    c.add_argument("--keys", type=int, default=10)
    c.add_argument("--limit", type=int, default=2)
    c.add_argument("--sleep", type=float, default=0.2)
    c.add_argument("--lease", type=int, default=6, help="STRATOQ_LEASE_SECONDS of the pollers")
    c.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills, about")
    c.add_argument("--kill-for", type=float, default=30.0, help="kill pollers this long")
    c.add_argument("--seed", type=int, default=19)
    r = sub.add_parser("rate")
    r.add_argument("--rate", type=int, default=10)
    r.add_argument("--seconds", type=int, default=60)
    k = sub.add_parser("cost")
    k.add_argument("--n", type=int, default=300)
    args = p.parse_args(argv)
    emu = Emulator()
    try:
        {"concurrency": concurrency, "rate": rate, "cost": cost}[args.what](emu, args)
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
