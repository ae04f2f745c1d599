"""`stratoq top`: queues, task rates and worker slots in a terminal, without Grafana.

Queue depths come from the API (`GET /v1/queues`), counters from one or more /metrics
endpoints (the dev stack's, pollers'). Rates are the change between two reads, so the
first screen (and `--once` with `--interval 0`) shows totals only.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import urllib3
from prometheus_client.parser import text_string_to_metric_families

from stratoq.observability import specs as m

Key = tuple[str, tuple[tuple[str, str], ...]]  # sample name, labels (sorted, no pid)

COUNTERS = {
    "enqueued": m.ENQUEUED.name,
    "started": m.STARTED.name,
    "succeeded": m.SUCCEEDED.name,
    "failed": m.FAILED.name,
    "retried": m.RETRIED.name,
    "timed_out": m.TIMED_OUT.name,
    "cancelled": m.CANCELLED.name,
}
QUEUE_GAUGES = {
    "visible": m.QUEUE_VISIBLE.name,
    "in_flight": m.QUEUE_IN_FLIGHT.name,
    "delayed": m.QUEUE_DELAYED.name,
    "dead_letter": m.QUEUE_DEAD_LETTER.name,
    "oldest_age": m.QUEUE_OLDEST_AGE.name,
}
HEARTBEAT_FRESH_SECONDS = 60
PRIORITY_ORDER = {"high": 0, "default": 1, "low": 2}


@dataclass
class Sample:
    """Metric values summed over endpoints and processes, read at `at` (monotonic)."""

    at: float
    values: dict[Key, float] = field(default_factory=dict)
    heartbeats: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def get(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.values.items() if n == name and want <= set(ls))

    def label_values(self, name: str, *labels: str) -> set[tuple[str, ...]]:
        found = set()
        for n, ls in self.values:
            if n == name:
                d = dict(ls)
                found.add(tuple(d.get(label, "") for label in labels))
        return found


def scrape(http: urllib3.PoolManager, urls: Sequence[str]) -> Sample:
    sample = Sample(time.monotonic())
    for url in urls:
        try:
            resp = http.request("GET", url)
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status}")
            text = resp.data.decode()
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            sample.errors.append(f"metrics {url}: {type(exc).__name__}: {exc}")
            continue
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == m.HEARTBEAT.name:
                    sample.heartbeats.append(s.value)
                    continue
                labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))
                key = (s.name, labels)
                sample.values[key] = sample.values.get(key, 0.0) + s.value
    return sample


@dataclass
class Snapshot:
    """What one screen shows (also the `--json` output)."""

    queues: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    workers: dict[str, Any]
    window_seconds: float | None
    errors: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "queues": self.queues,
            "tasks": self.tasks,
            "workers": self.workers,
            "window_seconds": self.window_seconds,
            "errors": self.errors,
        }


def _per_second(change: float | None, window: float | None) -> float | None:
    if change is None or not window:
        return None
    return max(0.0, change) / window


def snapshot(
    api_queues: list[dict[str, Any]] | None, cur: Sample, prev: Sample | None, errors: list[str]
) -> Snapshot:
    window = (cur.at - prev.at) if prev is not None else None
    # One row per SQS queue: a logical queue and one of its priorities.
    queues: dict[tuple[str, str], dict[str, Any]] = {}
    fields = ("queue", "priority", "visible", "in_flight", "delayed", "dead_letter")
    for api_row in api_queues or []:
        counts = {k: api_row.get(k) for k in fields}
        counts["priority"] = counts["priority"] or "default"
        queues[(str(counts["queue"]), str(counts["priority"]))] = counts
    for key, name in QUEUE_GAUGES.items():
        for queue, priority in cur.label_values(name, "queue", "priority"):
            priority = priority or "default"
            qrow = queues.setdefault((queue, priority), {"queue": queue, "priority": priority})
            if qrow.get(key) is None:  # the API's counts win; metrics fill in the rest
                qrow[key] = cur.get(name, queue=queue, priority=priority)
    tasks = []
    pairs = set()
    for name in COUNTERS.values():
        pairs |= cur.label_values(name, "queue", "task_name")
    for queue, task_name in sorted(pairs):
        row: dict[str, Any] = {"queue": queue, "task_name": task_name}
        for key, name in COUNTERS.items():
            row[key] = int(cur.get(name, queue=queue, task_name=task_name))

        def delta(name: str, q: str = queue, t: str = task_name) -> float | None:
            if prev is None:
                return None
            return cur.get(name, queue=q, task_name=t) - prev.get(name, queue=q, task_name=t)

        done = row["succeeded"] + row["failed"]
        d_enq, d_ok, d_failed = (delta(s.name) for s in (m.ENQUEUED, m.SUCCEEDED, m.FAILED))
        row["enqueued_per_s"] = _per_second(d_enq, window)
        row["done_per_s"] = _per_second(
            None if d_ok is None or d_failed is None else d_ok + d_failed, window
        )
        if d_ok is not None and d_failed is not None and d_ok + d_failed > 0:
            row["success_ratio"] = d_ok / (d_ok + d_failed)
        else:
            row["success_ratio"] = row["succeeded"] / done if done else None
        for short, spec in (("run", m.RUN_SECONDS), ("wait", m.QUEUE_WAIT)):
            total = cur.get(spec.name + "_sum", queue=queue, task_name=task_name)
            count = cur.get(spec.name + "_count", queue=queue, task_name=task_name)
            row[f"avg_{short}_seconds"] = total / count if count else None
        tasks.append(row)
    now = time.time()
    workers = {
        "slots_busy": int(cur.get(m.SLOTS_BUSY.name)),
        "slots_idle": int(cur.get(m.SLOTS_IDLE.name)),
        "heartbeating": sum(1 for h in cur.heartbeats if now - h < HEARTBEAT_FRESH_SECONDS),
    }
    return Snapshot(
        sorted(queues.values(), key=lambda r: (r["queue"], PRIORITY_ORDER.get(r["priority"], 3))),
        tasks,
        workers,
        window,
        errors,
    )


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.1f}s"
    return f"{value / 60:.1f}m"


def render(snap: Snapshot, title: str) -> str:
    lines = [title, ""]
    lines.append(
        f"{'QUEUE':<16}{'PRIORITY':<9}{'VISIBLE':>9}{'IN FLIGHT':>11}{'DELAYED':>9}{'DLQ':>7}"
        f"{'OLDEST':>9}"
    )
    for q in snap.queues:
        lines.append(
            f"{q['queue']:<16}{q.get('priority') or 'default':<9}"
            f"{_num(q.get('visible')):>9}{_num(q.get('in_flight')):>11}"
            f"{_num(q.get('delayed')):>9}{_num(q.get('dead_letter')):>7}"
            f"{_secs(q.get('oldest_age')):>9}"
        )
    if not snap.queues:
        lines.append("(no queue data)")
    w = snap.workers
    total = w["slots_busy"] + w["slots_idle"]
    lines += [
        "",
        f"WORKERS  slots busy {w['slots_busy']} of {total}   "
        f"processes heartbeating {w['heartbeating']}",
        "",
        f"{'QUEUE':<12}{'TASK':<18}{'ENQ/s':>7}{'DONE/s':>8}{'OK%':>7}{'SUCCEEDED':>10}"
        f"{'FAILED':>8}{'RETRIED':>8}{'TIMEOUT':>8}{'CANCEL':>7}{'AVG RUN':>9}{'AVG WAIT':>9}",
    ]
    for t in snap.tasks:
        ratio = None if t["success_ratio"] is None else 100 * t["success_ratio"]
        lines.append(
            f"{t['queue'][:11]:<12}{t['task_name'][:17]:<18}"
            f"{_num(t['enqueued_per_s'], '{:.1f}'):>7}{_num(t['done_per_s'], '{:.1f}'):>8}"
            f"{_num(ratio, '{:.1f}'):>7}{t['succeeded']:>10}{t['failed']:>8}{t['retried']:>8}"
            f"{t['timed_out']:>8}{t['cancelled']:>7}"
            f"{_secs(t['avg_run_seconds']):>9}{_secs(t['avg_wait_seconds']):>9}"
        )
    if not snap.tasks:
        lines.append("(no task metrics yet)")
    lines += [f"! {e}" for e in snap.errors]
    return "\n".join(lines) + "\n"


def run(
    queues: Callable[[], list[dict[str, Any]]] | None,
    metrics_urls: Sequence[str],
    *,
    interval: float = 2.0,
    once: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    label: str = "",
) -> int:
    """Show screens until Ctrl-C (or one, with `once`). 0 if anything could be read."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(total=5.0), retries=False)

    def read_queues() -> tuple[list[dict[str, Any]] | None, list[str]]:
        if queues is None:
            return None, []
        try:
            return queues(), []
        except Exception as exc:
            return None, [f"api: {type(exc).__name__}: {exc}"]

    prev: Sample | None = None
    if once and interval > 0:
        prev = scrape(http, metrics_urls)
        time.sleep(interval)
    clear = out.isatty() and not once
    try:
        while True:
            cur = scrape(http, metrics_urls)
            api, api_errors = read_queues()
            snap = snapshot(api, cur, prev, api_errors + cur.errors)
            if as_json:
                out.write(json.dumps(snap.as_json(), indent=2) + "\n")
            else:
                window = f"rates over {snap.window_seconds:.1f}s" if snap.window_seconds else ""
                title = f"stratoq top  {time.strftime('%H:%M:%S')}  {label}  {window}".rstrip()
                out.write(("\x1b[H\x1b[2J" if clear else "") + render(snap, title))
            out.flush()
            if once:
                nothing = api is None and not cur.values and not cur.heartbeats
                return 2 if nothing else 0
            prev = cur
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
