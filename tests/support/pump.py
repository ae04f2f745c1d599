"""A minimal in-test loop around Worker.process (what the poller does, minus threads)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from stratoq.adapters import aws
from stratoq.adapters.transport import Delivery
from stratoq.core.models import Task
from stratoq.core.workflows import WorkflowStatus
from stratoq.services.enqueue import Enqueuer
from stratoq.services.worker import Action, Disposition, Worker

if TYPE_CHECKING:
    from stratoq.services.app import Services


def apply(core: Enqueuer, delivery: Delivery, disposition: Disposition) -> None:
    if disposition.action is Action.ACK:
        core.transport.delete([delivery])
    elif disposition.action is Action.RELEASE:
        core.transport.change_visibility([(delivery, disposition.delay)])


def pump_until_final(
    core: Enqueuer, worker: Worker, task_ids: Iterable[str], timeout: float = 30.0
) -> list[Task]:
    """Receive and process messages until every task is final; returns them."""
    ids = list(task_ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = [core.store.get(i) for i in ids]
        if all(t is not None and t.status.final for t in tasks):
            return [t for t in tasks if t is not None]
        for d in core.transport.receive("default", 10, 1, 30):
            apply(core, d, worker.process(d))
    raise AssertionError(f"tasks not final after {timeout} s: {[core.store.get(i) for i in ids]}")


def queue_counts(core: Enqueuer, queue_url: str | None = None) -> dict[str, int]:
    return counts_at(aws.sqs(core.settings), queue_url or core.transport.url("default"))


def counts_at(sqs: Any, url: str) -> dict[str, int]:
    """A queue's visible, in-flight and delayed message counts."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attrs["ApproximateNumberOfMessages"]),
        "in_flight": int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        "delayed": int(attrs["ApproximateNumberOfMessagesDelayed"]),
    }


def run_until_ended(services: Services, worker: Worker, wf_id: str, rounds: int = 60) -> None:
    """Receive and process messages until the workflow has ended."""
    for _ in range(rounds):
        if services.workflows.get(wf_id, "default").status is not WorkflowStatus.RUNNING:
            return
        for d in services.transport.receive("default", 10, 1, 30):
            apply(services.enqueuer, d, worker.process(d))
    raise AssertionError(services.workflows.get(wf_id, "default"))
