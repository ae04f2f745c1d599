"""Metrics: one set of names, whatever runs the code.

The core calls the hooks below (`tasks_enqueued`, `task_started`, `task_ran`,
`task_finished`, `task_cancelled`, `message_handled`, the slot and heartbeat hooks). Each
hook records into

- prometheus-client: pollers, the dev stack, containers. `serve()` exposes /metrics;
  with several poller processes (`stratoq worker --processes P`) prometheus-client's
  multiprocess mode sums every process (`multiprocess()` sets it up);
- CloudWatch EMF through Powertools Metrics on Lambda, collected during an invocation
  and printed once at its end (`flush_after`), with the same metric names.

Queue depth and the age of the oldest message are not recorded by hooks: they are read
from SQS when /metrics is scraped (`watch_queues`), cached for a few seconds. A hook
never raises: a bug in metrics must not fail a task. Metrics carry queue and task names
only, never payloads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client import disable_created_metrics as _disable_created
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from stratoq.adapters.transport import SqsTransport
    from stratoq.core.models import Task

logger = logging.getLogger(__name__)

# *_created series double the output and no panel reads them.
_disable_created()  # type: ignore[no-untyped-call]

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
    "Tasks cancelled before they started.",
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
    "failed, duplicate, busy, hop, early, lost, released, malformed).",
    ("queue", "outcome"),
    emf=True,
)
SLOTS_BUSY = MetricSpec("stratoq_worker_slots_busy", "gauge", "Poller slots running a task.")
SLOTS_IDLE = MetricSpec("stratoq_worker_slots_idle", "gauge", "Poller slots waiting for work.")
HEARTBEAT = MetricSpec(
    "stratoq_worker_heartbeat_timestamp_seconds",
    "gauge",
    "Unix time of the poller's last lease heartbeat loop (every lease/3 seconds).",
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
    SLOTS_BUSY,
    SLOTS_IDLE,
    HEARTBEAT,
    QUEUE_VISIBLE,
    QUEUE_IN_FLIGHT,
    QUEUE_DELAYED,
    QUEUE_DEAD_LETTER,
    QUEUE_OLDEST_AGE,
)

_FINISHED = {"succeeded": SUCCEEDED, "retrying": RETRIED, "failed": FAILED}
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


# ------------------------------------------------------------------ recorders
class _Prometheus:
    """prometheus-client families, created on first use.

    Created lazily so that processes which never record anything (task child processes,
    a multiprocess supervisor) leave no files in the multiprocess directory.
    """

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self._pairs: set[tuple[str, str]] = set()
        self.histograms: dict[str, Histogram] = {}
        for spec in SPECS:
            if spec.kind == "counter":
                self.counters[spec.name] = Counter(spec.name, spec.help, spec.labels)
            elif spec.kind == "histogram":
                self.histograms[spec.name] = Histogram(
                    spec.name, spec.help, spec.labels, buckets=spec.buckets
                )
        # Live modes: a dead process's slots and heartbeat drop out of the sums.
        self.busy = Gauge(SLOTS_BUSY.name, SLOTS_BUSY.help, multiprocess_mode="livesum")
        self.idle = Gauge(SLOTS_IDLE.name, SLOTS_IDLE.help, multiprocess_mode="livesum")
        self.heartbeat = Gauge(HEARTBEAT.name, HEARTBEAT.help, multiprocess_mode="liveall")

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        if spec.labels == TASK_LABELS:
            self.init_pair(labels)
        self.counters[spec.name].labels(**labels).inc(value)

    def init_pair(self, labels: dict[str, str]) -> None:
        """Every task counter and histogram of a (queue, task_name) pair exists from now
        on, at 0 until used: `succeeded + failed` in PromQL finds both sides, and rate()
        sees the first increments (it misses those a series is born with)."""
        pair = (labels["queue"], labels["task_name"])
        if pair not in self._pairs:
            self._pairs.add(pair)
            for name in TASK_COUNTERS:
                self.counters[name].labels(**labels)
            for histogram in self.histograms.values():
                histogram.labels(**labels)

    def observe(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        self.init_pair(labels)
        self.histograms[spec.name].labels(**labels).observe(value)


class _Emf:
    """Collects an invocation's metrics; `flush` prints one EMF document per label set."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        # label set -> metric name -> (unit, values); counters keep one running sum.
        self._pending: dict[tuple[tuple[str, str], ...], dict[str, tuple[str, list[float]]]] = {}

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        with self._lock:
            group = self._pending.setdefault(tuple(labels.items()), {})
            values = group.setdefault(spec.name, (spec.unit, [0.0]))[1]
            values[0] += value

    def observe(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        with self._lock:
            group = self._pending.setdefault(tuple(labels.items()), {})
            group.setdefault(spec.name, (spec.unit, []))[1].append(value)

    def flush(self) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics

        with self._lock:
            pending, self._pending = self._pending, {}
        for labels, group in pending.items():
            # service="": no "service" dimension from POWERTOOLS_SERVICE_NAME, so the
            # dimension sets are exactly (queue, task_name) and (queue) everywhere.
            out = EphemeralMetrics(namespace=self.namespace, service="")
            dims = dict(labels)
            for key, value in dims.items():
                out.add_dimension(name=key, value=value)
            if "task_name" in dims:
                out.add_dimensions(queue=dims["queue"])  # a per-queue roll-up as well
            for name, (unit, values) in group.items():
                for v in values:
                    out.add_metric(name=name, unit=unit, value=v)
            out.flush_metrics()


class _State:
    lock = threading.Lock()
    configured = False
    prometheus: _Prometheus | None = None
    prometheus_on = True
    emf: _Emf | None = None
    warned: set[str] = set()
    slots_busy = 0
    slots_total = 0


def _on_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def configure(*, prometheus: bool | None = None, emf: bool | None = None) -> None:
    """Choose the recorders. Default: EMF on Lambda, prometheus-client everywhere else."""
    with _State.lock:
        _State.configured = True
        _State.prometheus_on = (not _on_lambda()) if prometheus is None else prometheus
        use_emf = _on_lambda() if emf is None else emf
        namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
        _State.emf = _Emf(namespace) if use_emf else None


def _recorders() -> tuple[_Prometheus | None, _Emf | None]:
    if not _State.configured:
        configure()
    prom = None
    if _State.prometheus_on:
        prom = _State.prometheus
        if prom is None:
            with _State.lock:
                if _State.prometheus is None:
                    _State.prometheus = _Prometheus()
                prom = _State.prometheus
    return prom, _State.emf


P = ParamSpec("P")
R = TypeVar("R")


def _hook(fn: Callable[P, None]) -> Callable[P, None]:
    """Never let a metrics problem escape into the caller; warn once per hook."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if fn.__name__ not in _State.warned:
                _State.warned.add(fn.__name__)
                logger.warning(
                    "recording a metric failed",
                    extra={"hook": fn.__name__, "error_type": type(exc).__name__},
                )

    return wrapper


def _count(spec: MetricSpec, labels: dict[str, str], value: float = 1.0) -> None:
    prom, emf = _recorders()
    if prom is not None:
        prom.count(spec, labels, value)
    if emf is not None and spec.emf:
        emf.count(spec, labels, value)


def _observe(spec: MetricSpec, labels: dict[str, str], value: float) -> None:
    prom, emf = _recorders()
    if prom is not None:
        prom.observe(spec, labels, value)
    if emf is not None and spec.emf:
        emf.observe(spec, labels, value)


def _labels(task: Task) -> dict[str, str]:
    return {"queue": task.queue, "task_name": task.name}


# ---------------------------------------------------------------------- hooks
@_hook
def tasks_enqueued(tasks: Iterable[Task]) -> None:
    """Tasks whose messages were handed to SQS."""
    for (queue, name), n in Tally((t.queue, t.name) for t in tasks).items():
        _count(ENQUEUED, {"queue": queue, "task_name": name}, n)


@_hook
def tasks_known(queues: Iterable[str], task_names: Iterable[str]) -> None:
    """Export every task counter and histogram of these pairs at 0 (at a worker's start).

    rate() and increase() only see what a series gains after its first scrape: a series
    born at 3 loses those 3. Counters that exist from the start lose nothing.
    """
    prom, _ = _recorders()
    if prom is not None:
        names = list(task_names)
        for queue in queues:
            for name in names:
                prom.init_pair({"queue": queue, "task_name": name})


def queue_wait_seconds(task: Task) -> float | None:
    """Seconds between when a claimed attempt was due and its start (`started_at`).

    Due is the latest of enqueue time, run_at/delay and retry time. A manual retry of an
    old task (`POST .../retry`) counts from its first enqueue, as nothing newer is kept.
    """
    if task.started_at is None:
        return None
    due = max(d for d in (task.created_at, task.scheduled_for, task.next_attempt_at) if d)
    return max(0.0, (task.started_at - due).total_seconds())


@_hook
def task_started(task: Task, took_over: bool = False) -> None:
    """A claimed attempt begins. A take-over's wait would include the lost attempt: skipped."""
    labels = _labels(task)
    _count(STARTED, labels)
    wait = None if took_over else queue_wait_seconds(task)
    if wait is not None:
        _observe(QUEUE_WAIT, labels, wait)


@_hook
def task_ran(task: Task, seconds: float, outcome: str) -> None:
    """A handler call ended with `outcome` (policy.OutcomeKind value)."""
    if outcome == "lost":
        return  # aborted (lease lost, shutdown): not a run time
    labels = _labels(task)
    _observe(RUN_SECONDS, labels, seconds)
    if outcome == "timeout":
        _count(TIMED_OUT, labels)


@_hook
def task_finished(task: Task, status: str) -> None:
    """An attempt's outcome was recorded: succeeded, retrying or failed."""
    spec = _FINISHED.get(status)
    if spec is not None:
        _count(spec, _labels(task))


@_hook
def task_cancelled(task: Task) -> None:
    _count(CANCELLED, _labels(task))


@_hook
def message_handled(queue: str, outcome: str) -> None:
    _count(MESSAGES, {"queue": queue, "outcome": outcome or "unknown"})


def _set_slots() -> None:
    prom, _ = _recorders()
    if prom is not None:
        prom.busy.set(_State.slots_busy)
        prom.idle.set(max(0, _State.slots_total - _State.slots_busy))


@_hook
def slots_configured(total: int) -> None:
    """A poller with `total` slots starts (slots add up over pollers of one process)."""
    with _State.lock:
        _State.slots_total += total
    _set_slots()


@_hook
def slot_taken() -> None:
    with _State.lock:
        _State.slots_busy += 1
    _set_slots()


@_hook
def slot_released() -> None:
    with _State.lock:
        _State.slots_busy = max(0, _State.slots_busy - 1)
    _set_slots()


@_hook
def worker_heartbeat() -> None:
    prom, _ = _recorders()
    if prom is not None:
        prom.heartbeat.set(time.time())


def flush() -> None:
    """Print the EMF documents collected so far (Lambda: once per invocation)."""
    emf = _State.emf
    if emf is None:
        return
    try:
        emf.flush()
    except Exception as exc:
        logger.warning("flushing EMF metrics failed", extra={"error_type": type(exc).__name__})


def flush_after(handler: Callable[P, R]) -> Callable[P, R]:
    """Decorate a Lambda handler: its metrics are flushed when the invocation ends."""

    @functools.wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return handler(*args, **kwargs)
        finally:
            flush()

    return wrapper


# ------------------------------------------------------------- queue gauges
OldestAge = Callable[[str, str], float | None]


class QueueWatch:
    """Queue depth gauges, read from SQS when scraped (cached for `ttl` seconds).

    `oldest_age(queue, url)` gives the age of the oldest message where that can be read
    without receiving: SQS has no such attribute (CloudWatch's ApproximateAgeOfOldestMessage
    is a metric, not an attribute), and peeking with ReceiveMessage would raise receive
    counts until messages of a stuck queue land in the dead-letter queue.
    """

    def __init__(
        self,
        transport: SqsTransport,
        queues: Sequence[str],
        oldest_age: OldestAge | None = None,
        ttl: float = 5.0,
    ) -> None:
        self._transport = transport
        self._queues = list(queues)
        self._oldest_age = oldest_age
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[dict[str, Any]]] | None = None
        self._warned = False

    def _read(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._ttl:
                return self._cached[1]
            rows = []
            for queue in self._queues:
                try:
                    row = dict(self._transport.stats(queue))
                    if self._oldest_age is not None:
                        row["oldest_age"] = self._oldest_age(queue, self._transport.url(queue))
                    rows.append(row)
                except Exception as exc:
                    if not self._warned:  # once: a scrape every 15 s must not flood logs
                        self._warned = True
                        logger.warning(
                            "reading queue attributes for metrics failed",
                            extra={"queue": queue, "error_type": type(exc).__name__},
                        )
            self._cached = (now, rows)
            return rows

    def collect(self) -> Iterable[Metric]:
        rows = self._read()
        fields = (
            (QUEUE_VISIBLE, "visible"),
            (QUEUE_IN_FLIGHT, "in_flight"),
            (QUEUE_DELAYED, "delayed"),
            (QUEUE_DEAD_LETTER, "dead_letter"),
            (QUEUE_OLDEST_AGE, "oldest_age"),
        )
        for spec, key in fields:
            # One series per SQS queue: the logical queue and its priority. A priority
            # queue sharing its queue's dead-letter queue has no dead_letter sample, so
            # sum() over priorities counts that DLQ once.
            family = GaugeMetricFamily(spec.name, spec.help, labels=["queue", "priority"])
            for row in rows:
                if row.get(key) is not None:
                    labels = [row["queue"], row.get("priority", "default")]
                    family.add_metric(labels, float(row[key]))
            if family.samples:
                yield family


# ----------------------------------------------------------------- exposition
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap_dead(path: str) -> None:
    """Drop the live gauges of processes that are gone (a poller that died or restarted)."""
    for name in os.listdir(path):
        m = _LIVE_FILE.match(name)
        if m and not _alive(int(m.group(1))):
            mark_process_dead(int(m.group(1)), path)  # type: ignore[no-untyped-call]


class _Exposition:
    """What /metrics shows: this process (or every process of a multiprocess worker)."""

    def __init__(self, names: set[str] | None = None) -> None:
        self._names = names

    def collect(self) -> Iterable[Metric]:
        path = os.environ.get(MULTIPROC_ENV)
        families: Iterable[Metric]
        if path and os.path.isdir(path):
            _reap_dead(path)
            families = MultiProcessCollector(None, path=path).collect()  # type: ignore[no-untyped-call]
        else:
            families = REGISTRY.collect()
        for family in families:
            if self._names is None or family.name in self._names:
                yield family
        for watch in list(_Served.watches):
            for family in watch.collect():
                if self._names is None or family.name in self._names:
                    yield family

    def restricted_registry(self, names: Iterable[str]) -> _Exposition:
        # /metrics?name[]=... (families are named without _total/_bucket suffixes)
        wanted = set(names)
        return _Exposition({n.removesuffix("_total") for n in wanted} | wanted)


class _Served:
    ports: dict[int, Any] = {}
    watches: list[QueueWatch] = []
    lock = threading.Lock()


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on host:port from a background thread (once per port and process)."""
    with _Served.lock:
        if port in _Served.ports:
            return  # already served here, e.g. by the container entry point
        server, _ = start_http_server(port, addr=host, registry=_Exposition())
        _Served.ports[port] = server
    _recorders()  # the families exist (at zero) from the first scrape on


def watch_queues(
    transport: SqsTransport,
    queues: Sequence[str],
    oldest_age: OldestAge | None = None,
    ttl: float = 5.0,
) -> QueueWatch:
    """Add queue depth gauges of `queues` to /metrics."""
    watch = QueueWatch(transport, queues, oldest_age, ttl)
    with _Served.lock:
        _Served.watches.append(watch)
    return watch


def stop_serving() -> None:
    """Stop every /metrics server of this process and forget the queue watches (tests)."""
    with _Served.lock:
        for server in _Served.ports.values():
            server.shutdown()
            server.server_close()
        _Served.ports.clear()
        _Served.watches.clear()


@contextlib.contextmanager
def multiprocess(enabled: bool = True) -> Iterator[str | None]:
    """Give child processes a shared PROMETHEUS_MULTIPROC_DIR; /metrics then sums them all.

    Must be entered before the children start (they read it when they import
    prometheus_client). An existing PROMETHEUS_MULTIPROC_DIR is used as it is (it must
    be empty at start); otherwise a temporary directory is made and removed on exit.
    """
    if not enabled:
        yield None
        return
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        os.makedirs(existing, exist_ok=True)
        yield existing
        return
    path = tempfile.mkdtemp(prefix="stratoq-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
