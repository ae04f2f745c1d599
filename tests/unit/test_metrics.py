"""The metrics hooks: what they record in prometheus-client and in EMF (Lambda)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from stratoq.core.models import Task, TaskStatus
from stratoq.observability import metrics

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def task(name: str = "resize", queue: str = "default", **fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": "0" * 32,
        "tenant": "default",
        "name": name,
        "status": TaskStatus.RUNNING,
        "queue": queue,
        "payload": {"secret": "never in metrics"},
        "created_at": T0,
        "max_attempts": 3,
        "timeout_seconds": 60,
    }
    base.update(fields)
    return Task(**base)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def emf(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """EMF on (as on Lambda) for one test; yields a reader of the printed documents."""
    metrics.configure(prometheus=True, emf=True)

    def documents() -> list[dict[str, Any]]:
        out = capsys.readouterr().out
        docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [d for d in docs if "_aws" in d]

    yield documents
    metrics.configure()


def test_queue_wait_counts_from_when_the_attempt_was_due() -> None:
    assert metrics.queue_wait_seconds(task(started_at=T0 + timedelta(seconds=3))) == 3.0
    delayed = task(
        scheduled_for=T0 + timedelta(minutes=5),
        next_attempt_at=T0 + timedelta(minutes=5),
        started_at=T0 + timedelta(minutes=5, seconds=2),
    )
    assert metrics.queue_wait_seconds(delayed) == 2.0
    retry = task(next_attempt_at=T0 + timedelta(minutes=1), started_at=T0 + timedelta(seconds=61.5))
    assert metrics.queue_wait_seconds(retry) == 1.5
    # Clocks of different machines: never negative.
    assert metrics.queue_wait_seconds(task(started_at=T0 - timedelta(seconds=1))) == 0.0
    assert metrics.queue_wait_seconds(task()) is None


def test_hooks_count_per_queue_and_task_name() -> None:
    t = task(name="unit-hooks", started_at=T0 + timedelta(seconds=2))
    labels = {"queue": "default", "task_name": "unit-hooks"}
    metrics.tasks_enqueued([t, t])
    metrics.task_started(t)
    metrics.task_ran(t, 0.2, "error")
    metrics.task_finished(t, "retrying")
    metrics.task_started(t)
    metrics.task_ran(t, 5.0, "timeout")
    metrics.task_finished(t, "failed")
    metrics.task_started(t, took_over=True)
    metrics.task_ran(t, 1.0, "lost")  # aborted: no run time
    metrics.task_ran(t, 0.1, "success")
    metrics.task_finished(t, "succeeded")
    metrics.task_cancelled(t)
    assert value("stratoq_tasks_enqueued_total", **labels) == 2
    assert value("stratoq_tasks_started_total", **labels) == 3
    assert value("stratoq_tasks_retried_total", **labels) == 1
    assert value("stratoq_tasks_failed_total", **labels) == 1
    assert value("stratoq_tasks_succeeded_total", **labels) == 1
    assert value("stratoq_tasks_timed_out_total", **labels) == 1
    assert value("stratoq_tasks_cancelled_total", **labels) == 1
    assert value("stratoq_task_run_seconds_count", **labels) == 3
    assert value("stratoq_task_run_seconds_sum", **labels) == pytest.approx(5.3)
    assert value("stratoq_task_run_seconds_bucket", le="0.25", **labels) == 2
    # The take-over's wait would include the lost attempt: not observed.
    assert value("stratoq_task_queue_wait_seconds_count", **labels) == 2
    assert value("stratoq_task_queue_wait_seconds_sum", **labels) == 4.0


def test_every_task_counter_of_a_pair_exists_from_the_first_use() -> None:
    labels = {"queue": "default", "task_name": "unit-first-use"}
    metrics.tasks_enqueued([task(name="unit-first-use")])
    for counter in ("succeeded", "failed", "retried", "timed_out", "cancelled", "started"):
        assert REGISTRY.get_sample_value(f"stratoq_tasks_{counter}_total", labels) == 0.0
    metrics.tasks_known(["default", "low"], ["unit-known"])
    for queue in ("default", "low"):
        sample = {"queue": queue, "task_name": "unit-known"}
        assert REGISTRY.get_sample_value("stratoq_tasks_failed_total", sample) == 0.0


def test_slots_and_heartbeat() -> None:
    before_busy = value("stratoq_worker_slots_busy")
    before_idle = value("stratoq_worker_slots_idle")
    metrics.slots_configured(3)
    metrics.slot_taken()
    metrics.slot_taken()
    metrics.slot_released()
    assert value("stratoq_worker_slots_busy") == before_busy + 1
    assert value("stratoq_worker_slots_idle") == before_idle + 2
    metrics.slot_released()
    metrics.slots_configured(-3)
    metrics.worker_heartbeat()
    assert abs(value("stratoq_worker_heartbeat_timestamp_seconds") - time.time()) < 60


def test_a_broken_recorder_never_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(metrics, "_recorders", broken)
    metrics.tasks_enqueued([task()])  # no exception
    metrics.task_finished(task(), "succeeded")


def test_emf_documents_per_label_set_flushed_once(emf: Any) -> None:
    a = task(name="resize", started_at=T0 + timedelta(seconds=1))
    b = task(name="thumb", queue="low")
    metrics.tasks_enqueued([a, a, b])
    metrics.task_started(a)
    metrics.task_ran(a, 0.5, "success")
    metrics.task_ran(a, 1.5, "success")
    metrics.task_finished(a, "succeeded")
    metrics.message_handled("default", "succeeded")
    assert emf() == []  # nothing is printed before the end of the invocation
    metrics.flush()
    docs = emf()
    by_task = {(d.get("queue"), d.get("task_name")): d for d in docs}
    doc = by_task["default", "resize"]
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "stratoq"
    assert directive["Dimensions"] == [["queue", "task_name"], ["queue"]]  # no "service"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units["stratoq_tasks_enqueued_total"] == "Count"
    assert units["stratoq_task_run_seconds"] == "Seconds"
    assert doc["stratoq_tasks_enqueued_total"] == [2.0]  # counters: one sum per flush
    assert doc["stratoq_tasks_succeeded_total"] == [1.0]
    assert doc["stratoq_task_run_seconds"] == [0.5, 1.5]  # histograms: every value
    assert doc["stratoq_task_queue_wait_seconds"] == [1.0]
    assert by_task["low", "thumb"]["stratoq_tasks_enqueued_total"] == [1.0]
    messages = next(d for d in docs if "outcome" in d)
    assert messages["stratoq_worker_messages_total"] == [1.0]
    assert "never in metrics" not in json.dumps(docs)
    metrics.flush()
    assert emf() == []  # flushed once


def test_flush_after_flushes_even_when_the_handler_raises(emf: Any) -> None:
    @metrics.flush_after
    def handler(fail: bool) -> str:
        metrics.task_cancelled(task(name="cancel-me"))
        if fail:
            raise ValueError("no")
        return "ok"

    assert handler(False) == "ok"
    assert emf()[0]["stratoq_tasks_cancelled_total"] == [1.0]
    with pytest.raises(ValueError, match="no"):
        handler(True)
    assert emf()[0]["stratoq_tasks_cancelled_total"] == [1.0]


def test_lambda_defaults_to_emf(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def recorders() -> tuple[bool, bool]:
        """Which recorders took a task: (prometheus-client, EMF)."""
        labels = {"queue": "default", "task_name": "lambda-default"}
        before = value("stratoq_tasks_enqueued_total", **labels)
        capsys.readouterr()
        metrics.tasks_enqueued([task(name="lambda-default")])
        metrics.flush()
        lines = capsys.readouterr().out.splitlines()
        emf = any(line.startswith("{") and "_aws" in json.loads(line) for line in lines)
        return value("stratoq_tasks_enqueued_total", **labels) > before, emf

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "stratoq-WorkerFunction")
    metrics.configure()
    try:
        prom, emf = recorders()
        assert not prom and emf
    finally:
        monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME")
        metrics.configure()
    prom, emf = recorders()
    assert prom and not emf


class FakeTransport:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    def stats(self, queue: str) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("AccessDenied")
        return {"queue": queue, "visible": 3, "in_flight": 1, "delayed": 2, "dead_letter": 0}

    def url(self, queue: str) -> str:
        return f"http://sqs/123/{queue}"


def test_queue_gauges_are_read_at_scrape_time_and_cached() -> None:
    fake = FakeTransport()
    watch = metrics.QueueWatch(fake, ["default"], lambda q, url: 7.5, ttl=60)  # type: ignore[arg-type]
    families = {f.name: f for f in watch.collect()}
    assert families["stratoq_queue_messages_visible"].samples[0].value == 3
    assert families["stratoq_queue_messages_delayed"].samples[0].labels == {
        "queue": "default",
        "priority": "default",  # rows without a priority are the default priority's
    }
    assert families["stratoq_queue_oldest_message_age_seconds"].samples[0].value == 7.5
    list(watch.collect())
    assert fake.calls == 1  # cached
    fake.fail = True
    broken = metrics.QueueWatch(fake, ["default"], ttl=0)  # type: ignore[arg-type]
    assert list(broken.collect()) == []  # an SQS error leaves the gauges out, nothing raises


def test_every_exposed_name_is_prefixed() -> None:
    names = metrics.exposed_names()
    assert all(n.startswith("stratoq_") for n in names)
    assert "stratoq_task_run_seconds_bucket" in names
    assert len({s.name for s in metrics.SPECS}) == len(metrics.SPECS)
