"""The peer: Celery on kombu's SQS transport, against the same emulator.

Tuned fairly (see docs/benchmarks.md): late acks (a task survives a worker crash, as in
stratoq), prefetch of up to 10 messages per receive, long polling without extra client
delay, no result backend (Celery's fastest configuration: it keeps no task state).

With BENCH_RESULT_BACKEND set (a `dynamodb://` URL), it is the equal-guarantee peer of
the paced benchmark instead: every task's state is written to DynamoDB, STARTED when it
begins (task_track_started) and its outcome when it ends, as stratoq records both.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery

app = Celery("bench", broker=os.environ.get("BENCH_BROKER", "sqs://testing:testing@127.0.0.1:4566"))
app.conf.update(
    broker_transport_options={
        "region": "us-east-1",
        "is_secure": False,
        "wait_time_seconds": 1,
        "polling_interval": 0,
        "visibility_timeout": 60,
        "queue_name_prefix": "celerybench-",
    },
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=10,
    worker_send_task_events=False,
    task_default_queue="noop",
)
if os.environ.get("BENCH_RESULT_BACKEND"):
    app.conf.update(
        result_backend=os.environ["BENCH_RESULT_BACKEND"],
        task_ignore_result=False,
        task_track_started=True,
    )


@app.task(name="noop", bind=True)
def noop(self: Any, sent_at: float) -> None:
    # One line per task, appended atomically: sent, handler start, handler end, task id
    # (the times from this machine's clock, as the producer's).
    started = time.time()
    fd = os.open(os.environ["BENCH_LATENCY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        line = f"{sent_at:.6f} {started:.6f} {time.time():.6f} {self.request.id}\n"
        os.write(fd, line.encode())
    finally:
        os.close(fd)
