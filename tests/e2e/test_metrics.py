"""Metrics end to end: a real Prometheus scrapes a running `stratoq dev` under a workload.

One workload per module (the fixture `observed`): 40 echo tasks, 10 that fail once and
then succeed, 3 that fail for good, 2 that time out, 2 cancelled before they run, 3
sharing a concurrency slot and 3 sharing a rate limit (so some wait for each), and one
poison message in the dead-letter queue. Prometheus (Debian's package) scrapes the
dev stack every second with infra/prometheus/prometheus-dev.yml and evaluates
infra/prometheus/rules; every PromQL expression of the dashboards and rules is then
evaluated through its HTTP API.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support import prometheus as p
from tests.support.procs import wait_for

pytestmark = pytest.mark.skipif(p.PROMETHEUS is None or p.PROMTOOL is None, reason=p.MISSING)

DASHBOARD = ROOT / "infra" / "grafana" / "dashboards" / "stratoq.json"
RULES = ROOT / "infra" / "prometheus" / "rules" / "stratoq.rules.yml"
MARKER = "payload-marker-5e1f"  # in every payload: must never show up in metrics
NO_BACKOFF = {"base_seconds": 0, "jitter": False}

# What the workload must produce, per counter and task name (zeros left out).
EXPECTED = {
    "enqueued": {
        "echo": 42,
        "fail": 10,
        "give_up": 3,
        "cpu": 2,
        "no_such_task": 1,
        "report": 1,
        "sleep": 6,
    },
    "started": {
        "echo": 40,
        "fail": 20,
        "give_up": 3,
        "cpu": 2,
        "no_such_task": 1,
        "report": 1,
        "sleep": 6,
    },
    "succeeded": {"echo": 40, "fail": 10, "report": 1, "sleep": 6},
    "retried": {"fail": 10},
    "failed": {"give_up": 3, "cpu": 2, "no_such_task": 1},
    "timed_out": {"cpu": 2},
    "cancelled": {"echo": 2},
}
# Alerts the workload trips (they have a `for:` clause, so they are pending or firing).
TRIPPED = {
    "StratoqDeadLetterQueueNotEmpty",
    "StratoqHighFailureRatio",
    "StratoqUnknownTaskFailed",
    "StratoqTasksHandedBack",
}


@dataclass
class Observed:
    stack: DevStack
    prom: p.Prometheus
    metrics_url: str
    seconds: float


def _workload(stack: DevStack) -> list[str]:
    """Enqueue the workload over the API; returns the ids of the tasks that will run."""
    tasks: list[dict[str, Any]] = [
        {"name": "echo", "payload": {"i": i, "m": MARKER}} for i in range(40)
    ]
    tasks += [
        {"name": "fail", "payload": {"times": 1, "m": MARKER}, "backoff": NO_BACKOFF}
        for _ in range(10)
    ]
    tasks += [{"name": "give_up", "payload": {"m": MARKER}} for _ in range(3)]
    tasks += [
        {"name": "cpu", "payload": {"seconds": 30}, "timeout_seconds": 1, "max_attempts": 1}
        for _ in range(2)
    ]
    # No worker has it: handed back for the (short) grace period, then failed.
    tasks += [{"name": "no_such_task", "allow_unknown_name": True}]
    # One slot for three 1.5 s tasks, and a new 30/m bucket for three: some of each wait.
    # Delayed, the rate-limited ones take their tokens at the worker (due together: the
    # two whose tokens are 2 and 4 s away are handed back; a token under a second away
    # would be slept out instead), not at the enqueue (which would delay their messages).
    slot = {"concurrency_key": "metrics", "max_concurrency": 1}
    tasks += [{"name": "sleep", "payload": {"seconds": 1.5}, **slot} for _ in range(3)]
    rated = {"rate_limit": "30/m", "delay_seconds": 1}
    tasks += [{"name": "sleep", "payload": {"seconds": 0}, **rated} for _ in range(3)]
    status, body = stack.request("POST", "/v1/tasks/batch", {"tasks": tasks})
    assert status == 202, body
    ids = [t["id"] for t in body["tasks"]]
    # A paused task name: its task is handed back unspent until resumed (by the fixture).
    status, body = stack.request("POST", "/v1/tasks/names/report/pause")
    assert status == 200 and body["paused"], body
    status, body = stack.request("POST", "/v1/tasks", {"name": "report", "payload": {}})
    assert status == 202, body
    ids.append(body["id"])
    for _ in range(2):
        status, task = stack.request(
            "POST", "/v1/tasks", {"name": "echo", "payload": {"m": MARKER}, "delay_seconds": 600}
        )
        assert status == 202, task
        status, cancelled = stack.request("POST", f"/v1/tasks/{task['id']}/cancel")
        assert status == 200 and cancelled["status"] == "cancelled", cancelled
    # A poison message, as SQS redrive leaves it after MaxReceiveCount crashed deliveries.
    sqs = stack.sqs()
    [dlq] = [u for u in sqs.list_queues()["QueueUrls"] if u.endswith("-dlq")]
    sqs.send_message(QueueUrl=dlq, MessageBody='{"id": "poison", "t": "default"}')
    return ids


def _all_final(stack: DevStack, ids: list[str]) -> None:
    pending = set(ids)

    def done() -> bool:
        for tid in list(pending):
            status, task = stack.request("GET", f"/v1/tasks/{tid}")
            assert status == 200, task
            if task["status"] in ("succeeded", "failed", "cancelled"):
                pending.discard(tid)
        return not pending

    wait_for(done, 90, "every task of the workload to finish", every=0.3)


def _paused_hand_backs(port: int) -> float:
    """Hand-backs of paused tasks so far, read off the stack's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()  # nosec B310 - loopback
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith("stratoq_tasks_handed_back_total{") and 'reason="paused"' in line
    )


def _totals(prom: p.Prometheus, counter: str) -> dict[str, float]:
    values = prom.values(f"sum by (task_name) (stratoq_tasks_{counter}_total)", "task_name")
    return {k: v for k, v in values.items() if v}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("metrics")
    port = p.free_port()
    (tmp / "dev").mkdir()
    stack = start_dev(
        tmp / "dev",
        "--metrics-port",
        str(port),
        "--workers",
        "4",
        # Pauses read on every message: the task enqueued right after one is held for sure.
        # Unknown names handed back for 8 s: several hand-backs, scrapes apart, so that
        # rate() sees the counter rise after its first sample (with 3 s, one or two
        # hand-backs before the series' first scrape left its alert empty now and then).
        env_extra={"STRATOQ_UNKNOWN_TASK_GRACE_SECONDS": "8", "STRATOQ_PAUSE_CACHE_SECONDS": "0"},
    )
    started = time.monotonic()
    try:
        with p.running(tmp, p.dev_config([f"127.0.0.1:{port}"])) as prom:
            # Scraped once before the workload: counters exist at 0 (the poller exports
            # its registry's task names), so rate() sees every increment.
            wait_for(
                lambda: prom.query('stratoq_tasks_failed_total{task_name="give_up"} == 0'),
                30,
                "a first scrape of the dev stack",
            )
            ids = _workload(stack)
            wait_for(lambda: _paused_hand_backs(port) >= 1, 30, "the paused task to be handed back")
            status, body = stack.request("POST", "/v1/tasks/names/report/resume")
            assert status == 200 and not body["paused"], body
            _all_final(stack, ids)

            def settled() -> bool:
                got = {c: _totals(prom, c) for c in EXPECTED}
                dlq = prom.scalar("sum(stratoq_queue_messages_dead_letter)")
                return got == EXPECTED and dlq == 1

            wait_for(settled, 30, "Prometheus to scrape the final counts", every=0.5)
            yield Observed(
                stack, prom, f"http://127.0.0.1:{port}/metrics", time.monotonic() - started
            )
    finally:
        code = stop_dev(stack)
        assert code == 0, stack.log.read_text()[-3000:]


def test_counters_match_the_workload_exactly(observed: Observed) -> None:
    prom = observed.prom
    got = {c: _totals(prom, c) for c in EXPECTED}
    assert got == EXPECTED
    # One run-time observation per attempt that ran (no handler: nothing ran), one queue
    # wait per start.
    ran = {k: v for k, v in EXPECTED["started"].items() if k != "no_such_task"}
    for metric, expected in (
        ("stratoq_task_run_seconds_count", ran),
        ("stratoq_task_queue_wait_seconds_count", EXPECTED["started"]),
    ):
        counts = prom.values(f"sum by (task_name) ({metric})", "task_name")
        assert {k: v for k, v in counts.items() if v} == expected, metric
    outcomes = prom.values("sum by (outcome) (stratoq_worker_messages_total)", "outcome")
    assert outcomes["succeeded"] == 57
    assert outcomes["paused"] >= 1
    assert outcomes["concurrency"] >= 1
    assert outcomes["rate_limited"] >= 2  # each waiter once, until its token (late: again)
    assert outcomes["retrying"] == 10
    assert outcomes["failed"] == 6
    assert outcomes["handed_back"] >= 1
    unknown = prom.values(
        'sum by (outcome) (stratoq_tasks_unknown_total{task_name="no_such_task"})', "outcome"
    )
    assert unknown["failed"] == 1 and unknown["handed_back"] >= 1, unknown
    # Histograms exist at 0 before their first observation, so rate() sees all of them:
    # a quantile for every task that ran, not NaN.
    for metric in ("stratoq_task_run_seconds", "stratoq_task_queue_wait_seconds"):
        p95 = prom.values(
            f"histogram_quantile(0.95, sum by (task_name, le) (rate({metric}_bucket[2m])))",
            "task_name",
        )
        assert all(p95[name] >= 0 for name in ran), (metric, p95)
    # The timed-out attempts are in the run-time histogram at about their timeout.
    timed = prom.scalar('sum(stratoq_task_run_seconds_sum{task_name="cpu"})')
    assert timed is not None and 2.0 <= timed < 10.0


def test_queue_and_worker_gauges(observed: Observed) -> None:
    prom = observed.prom

    def gauge(name: str) -> float | None:
        return prom.scalar(f'max({name}{{queue="default"}})')

    wait_for(
        lambda: (
            gauge("stratoq_queue_messages_visible") == 0
            and gauge("stratoq_queue_messages_in_flight") == 0
        ),
        30,
        "the queue to drain",
    )
    # The cancelled tasks' messages. The unknown task's last hand-back was delayed too
    # until it failed; the gauges are read from SQS at most every few seconds (cached).
    wait_for(
        lambda: gauge("stratoq_queue_messages_delayed") == 2,
        30,
        "only the cancelled tasks' 2 messages to stay delayed",
    )
    assert gauge("stratoq_queue_messages_dead_letter") == 1
    age = gauge("stratoq_queue_oldest_message_age_seconds")
    assert age is not None and 0 <= age < 60
    wait_for(
        lambda: (
            prom.scalar("sum(stratoq_worker_slots_busy)") == 0
            and prom.scalar("sum(stratoq_worker_slots_idle)") == 4
        ),
        30,
        "every slot to be idle",
    )
    beat = prom.scalar("max(time() - stratoq_worker_heartbeat_timestamp_seconds)")
    assert beat is not None and beat < 30


def test_metrics_never_carry_payloads(observed: Observed) -> None:
    text = observed.stack.http.request("GET", observed.metrics_url).data.decode()
    assert "stratoq_tasks_succeeded_total" in text
    assert MARKER not in text
    log = observed.stack.log.read_text()
    assert MARKER not in log
    assert "recording a metric failed" not in log
    assert "reading queue attributes for metrics failed" not in log


def _dashboard_queries() -> tuple[list[tuple[str, str]], list[str]]:
    """(panel title, PromQL) of every target, and the template variables' queries."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [
        (panel["title"], target["expr"])
        for panel in dash["panels"]
        for target in panel.get("targets", [])
    ]
    variables = [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs, variables


def _grafana_to_promql(expr: str) -> str:
    # What Grafana substitutes: all queues and tasks, and windows that cover the workload.
    for var in ("queue", "task_name"):
        expr = expr.replace(f"${{{var}}}", ".*").replace(f"${var}", ".*")
    expr = expr.replace("$__rate_interval", "2m").replace("$__range", "5m")
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_expression_returns_data(observed: Observed) -> None:
    exprs, variables = _dashboard_queries()
    assert len(exprs) >= 30
    empty = []
    for title, expr in exprs:
        result = observed.prom.query(_grafana_to_promql(expr))
        if not p.finite(result):
            empty.append((title, expr, result))
    assert not empty, f"panels without (finite) data: {empty}"
    for query in variables:
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert m, query
        values = observed.prom.api(
            f"label/{m.group(2)}/values", **{"match[]": _grafana_to_promql(m.group(1))}
        )
        assert values, query
    task_names = observed.prom.api("label/task_name/values")
    assert {"echo", "fail", "give_up", "cpu"} <= set(task_names)


def test_rules_evaluate_and_the_tripped_alerts_fire(observed: Observed) -> None:
    prom = observed.prom
    groups = yaml.safe_load(RULES.read_text())["groups"]
    records = [r for g in groups for r in g["rules"] if "record" in r]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    # Every recording rule's expression, as written, returns data through the query API.
    for rule in records:
        assert p.finite(prom.query(rule["expr"])), rule["record"]

    # Prometheus itself loaded the rule files and evaluates them without errors.
    def evaluated() -> list[dict[str, Any]] | None:
        loaded = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
        done = all(r.get("lastEvaluation", "").startswith("2") for r in loaded)
        recorded = all(p.finite(prom.query(r["record"])) for r in records)
        return loaded if done and recorded else None

    loaded = wait_for(evaluated, 30, "every rule to be evaluated and recorded")
    assert len(loaded) == len(records) + len(alerts)
    assert all(r["health"] == "ok" and not r.get("lastError") for r in loaded), loaded

    # Every alert's expression evaluates; it returns data exactly when the workload
    # trips it. The others are empty on this healthy stack (as they should be) and are
    # made to fire by the promtool unit tests below.
    for rule in alerts:
        result = prom.query(rule["expr"])
        assert bool(result) == (rule["alert"] in TRIPPED), (rule["alert"], result)

    def active() -> set[str]:
        return {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]}

    wait_for(lambda: active() >= TRIPPED, 30, f"alerts {TRIPPED} to be pending or firing")
    assert active() == TRIPPED
    ratio = prom.scalar('queue:stratoq_task_failure_ratio:rate10m{queue="default"}')
    assert ratio is not None and 0.05 < ratio < 0.5


def test_promtool_accepts_the_configs_and_rules(tmp_path: Path) -> None:
    infra = ROOT / "infra" / "prometheus"
    for config in ("prometheus.yml", "prometheus-dev.yml", "prometheus-k8s.yml"):
        out = p.promtool("check", "config", str(infra / config))
        assert out.returncode == 0, out.stdout + out.stderr
    out = p.promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    # Unit tests of every alert on synthetic series, including those a healthy system
    # (like the workload above) never trips.
    out = p.promtool("test", "rules", str(infra / "tests" / "stratoq.rules.test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_top_shows_queues_rates_and_totals(observed: Observed) -> None:
    out = observed.stack.cli("top", "--json", "--interval", "0.3")
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    assert snap["errors"] == []
    # One row per priority queue; the shared dead-letter queue is on the default row.
    assert [(q["queue"], q["priority"]) for q in snap["queues"]] == [
        ("default", "high"),
        ("default", "default"),
        ("default", "low"),
    ]
    queue = snap["queues"][1]
    assert queue["dead_letter"] == 1 and queue["delayed"] == 2
    assert [q["dead_letter"] for q in snap["queues"]] == [None, 1, None]
    tasks = {t["task_name"]: t for t in snap["tasks"] if t["enqueued"]}
    for counter, per_task in EXPECTED.items():
        assert {k: t[counter] for k, t in tasks.items() if t[counter]} == per_task
    assert tasks["fail"]["success_ratio"] == 1.0
    assert tasks["give_up"]["success_ratio"] == 0.0
    assert snap["workers"]["slots_idle"] + snap["workers"]["slots_busy"] == 4
    assert snap["workers"]["heartbeating"] == 1
    screen = observed.stack.cli("top", "--once", "--interval", "0")
    assert screen.returncode == 0, screen.stderr
    echo_row = next(ln for ln in screen.stdout.splitlines() if " echo " in ln)
    assert echo_row.split()[:2] == ["default", "echo"]
    assert "40" in echo_row.split()  # succeeded


def test_the_workload_stays_quick(observed: Observed) -> None:
    assert observed.seconds < 60
