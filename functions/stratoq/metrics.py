"""Prometheus metrics of pollers and the dev stack (prometheus-client)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, disable_created_metrics, start_http_server

# *_created series double the output and no panel reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGES = Counter(
    "stratoq_worker_messages",
    "Messages handled by this process's workers, by queue and what became of them.",
    ["queue", "outcome"],
)
BUSY_SLOTS = Gauge("stratoq_worker_busy_slots", "Worker slots running a task now.")


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on host:port from a background thread."""
    start_http_server(port, addr=host)
