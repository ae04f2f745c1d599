"""`stratoq worker`: P poller processes (restarted if they die), or one in this process.

SIGTERM or SIGINT reaches every poller, which drains and exits 0; any number of signals
may arrive (`kill` on the process group and again from the supervisor): handlers only
wake a thread (`runtime.signals`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from typing import Any

from stratoq.core.settings import Settings
from stratoq.observability.logging import configure as configure_logging
from stratoq.observability.metrics import Metrics
from stratoq.observability.prometheus import PrometheusRecorder
from stratoq.runtime.poller import Poller
from stratoq.runtime.signals import on_stop_signals
from stratoq.services.app import Services

logger = logging.getLogger(__name__)


def run_poller(services: Services, concurrency: int, queues: list[str], grace: float) -> None:
    """Run one poller in this process until SIGTERM/SIGINT (a clean exit)."""
    configure_logging()  # a spawned poller process starts with no logging set up
    # A stop asked for while the poller is still starting (it spawns its slot processes
    # first) is remembered, so SIGTERM at any moment means a clean exit 0.
    stop_early = threading.Event()
    holder: list[Poller] = []

    def stop() -> None:
        stop_early.set()
        if holder:
            holder[0].stop()

    on_stop_signals(stop)
    poller = Poller(services, concurrency, queues, shutdown_grace=grace)
    holder.append(poller)
    if stop_early.is_set():
        poller.stop()
    poller.run()


def _poller_process(settings: Settings, concurrency: int, queues: list[str], grace: float) -> None:
    # A poller process of its own: its own composition root, recording into the shared
    # multiprocess metrics directory that its parent serves.
    services = Services(settings, metrics=Metrics([PrometheusRecorder()]))
    run_poller(services, concurrency, queues, grace)


def serve(
    services: Services,
    concurrency: int,
    processes: int = 1,
    queues: list[str] | None = None,
    shutdown_grace: float = 30.0,
) -> int:
    """Run pollers until SIGTERM/SIGINT; restarts a poller process that dies. Returns 0.

    One process: the poller runs here with `services`. Several: each poller process
    builds its own from `services.settings`.
    """
    configure_logging()
    settings = services.settings
    queues = queues or list(settings.queues)
    if processes == 1:
        run_poller(services, concurrency, queues, shutdown_grace)
        return 0
    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> Any:
        p = ctx.Process(
            target=_poller_process,
            args=(settings, concurrency, queues, shutdown_grace),
            name="stratoq-poller",
        )
        p.start()
        return p

    procs = [start() for _ in range(processes)]

    def stop() -> None:
        stopping.set()
        for p in list(procs):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)

    on_stop_signals(stop)
    while not stopping.is_set():
        for i, p in enumerate(procs):
            if not p.is_alive() and not stopping.is_set():
                logger.warning("poller process exited; restarting", extra={"code": p.exitcode})
                procs[i] = start()
        stopping.wait(1.0)
    for p in procs:
        p.join()
    return 0
