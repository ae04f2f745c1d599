"""stratoq's local Lambda path for the benchmark: `python -m loadtests.lambda_worker K`.

The dev stack's way (stratoq.local.dev): the worker function's handler fed by the local
event source mapping, one consumer per SQS queue (priority queues included), K of each,
as threads of this process. Settings come from the environment (STRATOQ_*). Runs until
SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading

from stratoq.core.settings import Settings
from stratoq.handlers.worker import WorkerFunction
from stratoq.local.esm import EventSourceMapping
from stratoq.services.app import Services


def main() -> None:
    consumers = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    services = Services(Settings.from_env())
    services.load_tasks()
    handler = WorkerFunction(services)
    settings = services.settings
    mappings = [
        EventSourceMapping(services.sqs, services.transport, q, handler, region=settings.region)
        for q in settings.queues
        for _ in range(consumers)
    ]
    threads = [threading.Thread(target=m.run, daemon=True) for m in mappings]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for t in threads:
        t.start()
    print("ready", flush=True)
    stop.wait()
    for m in mappings:
        m.stop()
    for t in threads:
        t.join(5)


if __name__ == "__main__":
    main()
