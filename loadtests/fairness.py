"""Benchmark of tenant fairness (issue 19) on the embedded emulator, 4 pollers.

    python -m loadtests.fairness              # fair receives (what `stratoq dev` runs)
    python -m loadtests.fairness --unfair     # the emulator's receives oldest first (moto's)

Tenant B enqueues one task a second throughout. First alone (`--baseline` seconds), then
while tenant A floods the queue with `--n` tasks at once (batches of 100); B goes on until
A's last task has run. Printed: B's enqueue-to-start p50/p95/max alone and during the
flood, and their ratio (the issue's bound: p95 during the flood at most 3x alone), A's
drain time, and AWS requests per task during the flood (counted at the emulator; the
tenant's MessageGroupId is a field of the send, not a request). Tasks (loadtests.tasks
`span`) log their start times (CLOCK_MONOTONIC, one clock for every process); the
enqueue time is taken just before the enqueue call. Figures go to docs/benchmarks.md
("Tenant fairness").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loadtests.bench import Emulator, _per_task
from loadtests.limits import POLLERS, Pollers, _ends, _stack


def _starts(path: Path) -> dict[str, int]:
    """Task id -> CLOCK_MONOTONIC ns of its first start."""
    out: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            kind, task_id, _, _, ns = line.split()
            if kind == "start":
                out.setdefault(task_id, int(ns))
    return out


def _latencies(enqueued: dict[str, int], starts: dict[str, int]) -> list[float]:
    return sorted((starts[t] - ns) / 1e6 for t, ns in enqueued.items() if t in starts)


def _summary(ms: list[float]) -> str:
    if not ms:
        return "no samples"
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"n={len(ms)} p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"


def _p95(ms: list[float]) -> float:
    return ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))] if ms else float("nan")


class QuietTenant:
    """Tenant B: one task a second, each enqueue's time noted, until stopped."""

    def __init__(self, core: Any, log: Path, sleep: float) -> None:
        from stratoq.core.models import TaskRequest

        self._core = core
        self._request = TaskRequest(name="span", payload={"path": str(log), "sleep": sleep})
        self.enqueued: dict[str, int] = {}
        self.returned: dict[str, int] = {}  # when each enqueue call returned
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        tick = time.monotonic()
        while not self._stop.is_set():
            sent = time.monotonic_ns()
            task = self._core.enqueue(self._request, tenant="tenant-b").task
            self.enqueued[task.id] = sent
            self.returned[task.id] = time.monotonic_ns()
            tick += 1.0
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def take(self) -> tuple[dict[str, int], dict[str, int]]:
        """When each task so far was enqueued and its call returned; start afresh."""
        taken, self.enqueued = self.enqueued, {}
        returned, self.returned = self.returned, {}
        return taken, returned

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def run(emu: Emulator, args: argparse.Namespace) -> None:
    from stratoq.core.models import TaskRequest
    from stratoq.services.app import Services

    settings, core = _stack(emu, "fairness")
    flood_core = Services(settings).enqueuer  # its own clients: the flood runs beside B
    logs = Path(tempfile.mkdtemp())
    a_log, b_log = logs / "a.log", logs / "b.log"
    quiet = QuietTenant(core, b_log, args.sleep)
    env = {} if args.prefetch is None else {"STRATOQ_PREFETCH": str(args.prefetch)}
    pollers = Pollers(settings, POLLERS, args.slots, **env)
    try:
        # Every slot process started and warm (imports, clients, keys) before measuring.
        warm = TaskRequest(name="span", payload={"path": str(logs / "warm.log"), "sleep": 0.2})
        core.enqueue_many([warm] * POLLERS * args.slots * 4, tenant="warm-up")
        while _ends(logs / "warm.log") < POLLERS * args.slots * 4:
            time.sleep(0.5)
        quiet.start()
        time.sleep(args.baseline)
        alone, alone_back = quiet.take()
        emu.counts(reset=True)
        started = time.monotonic()
        flood = TaskRequest(name="span", payload={"path": str(a_log), "sleep": args.sleep})
        for i in range(0, args.n, 100):
            flood_core.enqueue_many([flood] * min(100, args.n - i), tenant="tenant-a")
        enqueued_in = time.monotonic() - started
        deadline = time.monotonic() + 1200
        while _ends(a_log) < args.n and time.monotonic() < deadline:
            time.sleep(0.5)
        drained_in = time.monotonic() - started
        during, during_back = quiet.take()
        quiet.stop()
        time.sleep(3)  # B's last task starts; outcomes recorded, messages deleted
        counts = emu.counts()
    finally:
        quiet.stop()
        pollers.stop()
    starts = _starts(b_log)
    base, flooded = _latencies(alone, starts), _latencies(during, starts)
    mode = "moto's oldest-first receives (--unfair)" if args.unfair else "fair receives"
    print(f"fairness, {mode}: {POLLERS} pollers x {args.slots} slots, tasks sleep {args.sleep} s")
    print(f"  B alone ({args.baseline} s):   {_summary(base)}")
    print(
        f"  B during A's flood: {_summary(flooded)}"
        f"; {len(during) - len(flooded)} of {len(during)} never started"
    )
    for label, sent, back in (("alone", alone, alone_back), ("flood", during, during_back)):
        calls = sorted((back[t] - sent[t]) / 1e6 for t in back)
        print(f"  B's enqueue calls ({label}): {_summary(calls)}")
        print(
            f"  B's dwell, call returned to start ({label}): {_summary(_latencies(back, starts))}"
        )
    print(f"  p95 during / alone: {_p95(flooded) / _p95(base):.1f}x (bound: 3x)")
    print(
        f"  A: {args.n} tasks enqueued in {enqueued_in:.1f} s, all run in {drained_in:.1f} s"
        f" ({args.n / drained_in:.0f}/s)"
    )
    print(f"  requests per task during the flood: {_per_task(counts, args.n + len(during))}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="tenant A's flood")
    p.add_argument("--baseline", type=int, default=30, help="seconds of B alone")
    p.add_argument("--slots", type=int, default=2, help="slots per poller")
    p.add_argument("--sleep", type=float, default=0.02, help="each task's sleep, seconds")
    p.add_argument("--prefetch", type=int, help="STRATOQ_PREFETCH of the pollers (default 10)")
    p.add_argument("--unfair", action="store_true", help="the emulator without fair receives")
    args = p.parse_args(argv)
    emu = Emulator(unfair=args.unfair)
    try:
        run(emu, args)
    finally:
        emu.stop()


if __name__ == "__main__":
    main()
