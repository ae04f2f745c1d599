"""Queue depth gauges, read from SQS when /metrics is scraped (not recorded by hooks)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from stratoq.observability.specs import (
    QUEUE_DEAD_LETTER,
    QUEUE_DELAYED,
    QUEUE_IN_FLIGHT,
    QUEUE_OLDEST_AGE,
    QUEUE_VISIBLE,
)

if TYPE_CHECKING:
    from stratoq.adapters.transport import SqsTransport

logger = logging.getLogger(__name__)

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
