"""prometheus-client: the recorder of pollers, the dev stack and containers, and /metrics.

With several poller processes (`stratoq worker --processes P`) prometheus-client's
multiprocess mode sums every process (`multiprocess()` sets it up; the process that
serves /metrics reads every process's files).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client import disable_created_metrics as _disable_created
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from stratoq.observability.metrics import Recorder
from stratoq.observability.queue_gauges import QueueWatch
from stratoq.observability.specs import (
    HEARTBEAT,
    MULTIPROC_ENV,
    SLOTS_BUSY,
    SLOTS_IDLE,
    SPECS,
    TASK_COUNTERS,
    TASK_LABELS,
    MetricSpec,
)

# *_created series double the output and no panel reads them.
_disable_created()  # type: ignore[no-untyped-call]


class PrometheusRecorder(Recorder):
    """prometheus-client families in `registry` (the library's default one unless given).

    A process builds one (in its composition root); families are created on first use so
    that processes which never record anything (task child processes, a multiprocess
    supervisor) leave no files in the multiprocess directory.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._families: _Families | None = None

    @property
    def families(self) -> _Families:
        with self._lock:
            if self._families is None:
                self._families = _Families(self.registry)
            return self._families

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        f = self.families
        if spec.labels == TASK_LABELS:
            f.init_pair(labels)
        f.counters[spec.name].labels(**labels).inc(value)

    def observe(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        f = self.families
        f.init_pair(labels)
        f.histograms[spec.name].labels(**labels).observe(value)

    def known(self, labels: dict[str, str]) -> None:
        self.families.init_pair(labels)

    def slots(self, busy: int, idle: int) -> None:
        f = self.families
        f.busy.set(busy)
        f.idle.set(idle)

    def heartbeat(self, at: float) -> None:
        self.families.heartbeat.set(at)


class _Families:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.counters: dict[str, Counter] = {}
        self.histograms: dict[str, Histogram] = {}
        self._pairs: set[tuple[str, str]] = set()
        for spec in SPECS:
            if spec.kind == "counter":
                self.counters[spec.name] = Counter(
                    spec.name, spec.help, spec.labels, registry=registry
                )
            elif spec.kind == "histogram":
                self.histograms[spec.name] = Histogram(
                    spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=registry
                )
        # Live modes: a dead process's slots and heartbeat drop out of the sums.
        self.busy = Gauge(
            SLOTS_BUSY.name, SLOTS_BUSY.help, multiprocess_mode="livesum", registry=registry
        )
        self.idle = Gauge(
            SLOTS_IDLE.name, SLOTS_IDLE.help, multiprocess_mode="livesum", registry=registry
        )
        self.heartbeat = Gauge(
            HEARTBEAT.name, HEARTBEAT.help, multiprocess_mode="liveall", registry=registry
        )

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

    def __init__(self, server: MetricsServer, names: set[str] | None = None) -> None:
        self._server = server
        self._names = names

    def collect(self) -> Iterable[Metric]:
        path = os.environ.get(MULTIPROC_ENV)
        families: Iterable[Metric]
        if path and os.path.isdir(path):
            _reap_dead(path)
            families = MultiProcessCollector(None, path=path).collect()  # type: ignore[no-untyped-call]
        else:
            families = self._server.registry.collect()
        for family in families:
            if self._names is None or family.name in self._names:
                yield family
        for watch in self._server.watches():
            for family in watch.collect():
                if self._names is None or family.name in self._names:
                    yield family

    def restricted_registry(self, names: Iterable[str]) -> _Exposition:
        # /metrics?name[]=... (families are named without _total/_bucket suffixes)
        wanted = set(names)
        return _Exposition(self._server, {n.removesuffix("_total") for n in wanted} | wanted)


class MetricsServer:
    """/metrics on host:port from a background thread: `registry` (or every process's
    files in multiprocess mode) plus the queue gauges of `watch()`ed queues."""

    def __init__(
        self, port: int, host: str = "127.0.0.1", recorder: PrometheusRecorder | None = None
    ) -> None:
        self.registry: Any = recorder.registry if recorder is not None else REGISTRY
        if recorder is not None:
            _ = recorder.families  # the families exist (at zero) from the first scrape on
        self._watches: list[QueueWatch] = []
        self._lock = threading.Lock()
        self._server, _ = start_http_server(port, addr=host, registry=_Exposition(self))

    def watch(self, watch: QueueWatch) -> QueueWatch:
        """Add queue depth gauges to /metrics."""
        with self._lock:
            self._watches.append(watch)
        return watch

    def watches(self) -> list[QueueWatch]:
        with self._lock:
            return list(self._watches)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
