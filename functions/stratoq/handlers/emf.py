"""CloudWatch EMF through Powertools Metrics: the metrics recorder of the Lambda edge.

An invocation's metrics are collected and printed once at its end (`Metrics.flush`, run
by `lambda_entry`), one EMF document per label set, with the same metric names as
Prometheus (`stratoq.observability.specs`).
"""

from __future__ import annotations

import os
import threading

from aws_lambda_powertools.metrics import EphemeralMetrics

from stratoq.observability.metrics import Recorder
from stratoq.observability.specs import NAMESPACE, MetricSpec


class EmfRecorder(Recorder):
    """Collects an invocation's metrics; `flush` prints one EMF document per label set."""

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE
        self._lock = threading.Lock()
        # label set -> metric name -> (unit, values); counters keep one running sum.
        self._pending: dict[tuple[tuple[str, str], ...], dict[str, tuple[str, list[float]]]] = {}

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        if not spec.emf:
            return
        with self._lock:
            group = self._pending.setdefault(tuple(labels.items()), {})
            values = group.setdefault(spec.name, (spec.unit, [0.0]))[1]
            values[0] += value

    def observe(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        if not spec.emf:
            return
        with self._lock:
            group = self._pending.setdefault(tuple(labels.items()), {})
            group.setdefault(spec.name, (spec.unit, []))[1].append(value)

    def flush(self) -> None:
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
