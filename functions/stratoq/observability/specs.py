"""Metric names, kinds, units and buckets: one set of names whatever records them.

Prometheus (pollers, the dev stack, containers) and CloudWatch EMF (Lambda) record the
same specs, so dashboards and alerts read the same series everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "stratoq"  # EMF namespace (POWERTOOLS_METRICS_NAMESPACE overrides it)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TASK_LABELS = ("queue", "task_name")


@dataclass(frozen=True)
class MetricSpec:
    """One metric. `name` is the exposed name (counters end in _total) and the EMF name."""

    name: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...] = ()
    unit: str = "Count"  # CloudWatch unit of the EMF metric
    emf: bool = False  # also emitted through EMF on Lambda
    buckets: tuple[float, ...] = ()


RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
               900, 1800, 3600)  # fmt: skip
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
                3600, 7200, 21600)  # fmt: skip

ENQUEUED = MetricSpec(
    "stratoq_tasks_enqueued_total",
    "counter",
    "Tasks handed to SQS: new tasks (not idempotent repeats) and manual retries.",
    TASK_LABELS,
    emf=True,
)
STARTED = MetricSpec(
    "stratoq_tasks_started_total",
    "counter",
    "Attempts started: a worker claimed the task.",
    TASK_LABELS,
    emf=True,
)
SUCCEEDED = MetricSpec(
    "stratoq_tasks_succeeded_total", "counter", "Tasks that succeeded.", TASK_LABELS, emf=True
)
FAILED = MetricSpec(
    "stratoq_tasks_failed_total",
    "counter",
    "Tasks failed for good: last attempt used up, Fail raised, or no handler.",
    TASK_LABELS,
    emf=True,
)
RETRIED = MetricSpec(
    "stratoq_tasks_retried_total",
    "counter",
    "Failed attempts (errors, timeouts, Retry) that were scheduled to run again.",
    TASK_LABELS,
    emf=True,
)
TIMED_OUT = MetricSpec(
    "stratoq_tasks_timed_out_total",
    "counter",
    "Attempts stopped at their timeout (then retried or failed).",
    TASK_LABELS,
    emf=True,
)
CANCELLED = MetricSpec(
    "stratoq_tasks_cancelled_total",
    "counter",
    "Tasks cancelled: before they started, or stopped while running.",
    TASK_LABELS,
    emf=True,
)
RUN_SECONDS = MetricSpec(
    "stratoq_task_run_seconds",
    "histogram",
    "Time a handler ran, per attempt (timeouts included, lost attempts not).",
    TASK_LABELS,
    unit="Seconds",
    emf=True,
    buckets=RUN_BUCKETS,
)
QUEUE_WAIT = MetricSpec(
    "stratoq_task_queue_wait_seconds",
    "histogram",
    "Time from when an attempt was due (enqueued, run_at, retry time) to its start.",
    TASK_LABELS,
    unit="Seconds",
    emf=True,
    buckets=WAIT_BUCKETS,
)
MESSAGES = MetricSpec(
    "stratoq_worker_messages_total",
    "counter",
    "Messages handled by workers, by queue and what became of them (succeeded, retrying, "
    "failed, duplicate, busy, hop, early, lost, released, malformed, locked, "
    "handed_back, paused, concurrency, rate_limited, limits_unavailable, awaiting_record, "
    "orphan).",
    ("queue", "outcome"),
    emf=True,
)
UNKNOWN = MetricSpec(
    "stratoq_tasks_unknown_total",
    "counter",
    "Messages of a task name the worker has no handler for: handed back for a worker that "
    "has one (outcome=handed_back), or failed as unknown_task once the grace period "
    "(STRATOQ_UNKNOWN_TASK_GRACE_SECONDS) is over (outcome=failed).",
    ("queue", "task_name", "outcome"),
    emf=True,
)
HANDED_BACK = MetricSpec(
    "stratoq_tasks_handed_back_total",
    "counter",
    "Messages handed back to their queue unclaimed, no attempt spent, because the task "
    "must wait: its queue or task name is paused (reason=paused), every slot of one of "
    "its concurrency limits is held (reason=concurrency), or its rate-limit token is "
    "still to come (reason=rate_limited).",
    ("queue", "task_name", "reason"),
    emf=True,
)
ORPHANS = MetricSpec(
    "stratoq_orphan_messages_total",
    "counter",
    "Messages dropped because their task was never stored: the enqueuer sent the message "
    "and died (or failed) before storing the task, so its caller got no answer. Counted "
    "once the grace period (STRATOQ_ORPHAN_GRACE_SECONDS) after the enqueue is over.",
    ("queue", "task_name"),
    emf=True,
)
SLOTS_BUSY = MetricSpec("stratoq_worker_slots_busy", "gauge", "Poller slots running a task.")
SLOTS_IDLE = MetricSpec("stratoq_worker_slots_idle", "gauge", "Poller slots waiting for work.")
HEARTBEAT = MetricSpec(
    "stratoq_worker_heartbeat_timestamp_seconds",
    "gauge",
    "Unix time of the poller's last lease heartbeat loop (every min(lease/3, 5) seconds).",
)
QUEUE_VISIBLE = MetricSpec(
    "stratoq_queue_messages_visible",
    "gauge",
    "Messages waiting to be received (SQS ApproximateNumberOfMessages).",
    ("queue", "priority"),
)
QUEUE_IN_FLIGHT = MetricSpec(
    "stratoq_queue_messages_in_flight",
    "gauge",
    "Messages received and not yet deleted (SQS ApproximateNumberOfMessagesNotVisible).",
    ("queue", "priority"),
)
QUEUE_DELAYED = MetricSpec(
    "stratoq_queue_messages_delayed",
    "gauge",
    "Messages not yet due: delays, retries, hops (ApproximateNumberOfMessagesDelayed).",
    ("queue", "priority"),
)
QUEUE_DEAD_LETTER = MetricSpec(
    "stratoq_queue_messages_dead_letter",
    "gauge",
    "Messages in the queue's dead-letter queue.",
    ("queue", "priority"),
)
QUEUE_OLDEST_AGE = MetricSpec(
    "stratoq_queue_oldest_message_age_seconds",
    "gauge",
    "Age of the oldest receivable message, waiting or in flight (only where it can be "
    "read without receiving messages: the dev stack; on AWS see CloudWatch's "
    "ApproximateAgeOfOldestMessage).",
    ("queue", "priority"),
)

SPECS: tuple[MetricSpec, ...] = (
    ENQUEUED,
    STARTED,
    SUCCEEDED,
    FAILED,
    RETRIED,
    TIMED_OUT,
    CANCELLED,
    RUN_SECONDS,
    QUEUE_WAIT,
    MESSAGES,
    UNKNOWN,
    HANDED_BACK,
    ORPHANS,
    SLOTS_BUSY,
    SLOTS_IDLE,
    HEARTBEAT,
    QUEUE_VISIBLE,
    QUEUE_IN_FLIGHT,
    QUEUE_DELAYED,
    QUEUE_DEAD_LETTER,
    QUEUE_OLDEST_AGE,
)

FINISHED = {"succeeded": SUCCEEDED, "retrying": RETRIED, "failed": FAILED}
TASK_COUNTERS = tuple(s.name for s in SPECS if s.kind == "counter" and s.labels == TASK_LABELS)


def exposed_names() -> set[str]:
    """Every series name /metrics can show (histograms with _bucket, _sum, _count)."""
    names: set[str] = set()
    for spec in SPECS:
        if spec.kind == "histogram":
            names |= {spec.name + s for s in ("_bucket", "_sum", "_count")}
        else:
            names.add(spec.name)
    return names
