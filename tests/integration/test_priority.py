"""Priority queues on the emulator: routing, retries keeping their queue, queue counts."""

from __future__ import annotations

from stratoq.adapters import aws
from stratoq.adapters.transport import SqsTransport, queue_stats
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.procs import wait_for
from tests.support.pump import apply, queue_counts


def counts(core: Enqueuer, key: str) -> dict[str, int]:
    return queue_counts(core, core.transport.url(key))


def test_the_template_gives_the_default_queue_high_and_low_queues(settings: Settings) -> None:
    assert set(settings.queues) == {"default", "default:high", "default:low"}
    assert settings.queues["default"].endswith("/stratoq-default")
    assert settings.queues["default:high"].endswith("/stratoq-default-high")


def test_enqueue_routes_each_priority_to_its_queue(core: Enqueuer) -> None:
    core.enqueue_many(
        [TaskRequest(name="echo", priority="high")] * 2
        + [TaskRequest(name="echo")] * 3
        + [TaskRequest(name="echo", priority="low")]
    )
    core.enqueue(TaskRequest(name="echo", priority="low", delay_seconds=60))
    assert counts(core, "default:high") == {"visible": 2, "in_flight": 0, "delayed": 0}
    assert counts(core, "default") == {"visible": 3, "in_flight": 0, "delayed": 0}
    assert counts(core, "default:low") == {"visible": 1, "in_flight": 0, "delayed": 1}


def test_without_priority_queues_every_priority_goes_to_the_default_queue(
    settings: Settings, core: Enqueuer
) -> None:
    # A deployment configured before priorities existed.
    old = Enqueuer(
        core.store,
        SqsTransport(aws.sqs(settings), {"default": settings.queues["default"]}),
        settings,
    )
    task = old.enqueue(TaskRequest(name="echo", priority="high")).task
    assert task.priority == "high"  # still stored as asked
    assert counts(core, "default")["visible"] == 1
    assert counts(core, "default:high")["visible"] == 0


def test_a_retry_goes_back_to_the_tasks_priority_queue(core: Enqueuer) -> None:
    worker = Worker(core.store, core.transport, InlineRunner())
    tid = core.enqueue(
        TaskRequest(name="retry_after", payload={"delay": 1}, priority="high")
    ).task.id
    [delivery] = core.transport.receive("default:high", 10, 1, 30)
    apply(core, delivery, worker.process(delivery))
    assert core.store.get(tid).status is TaskStatus.RETRYING
    # The retry's fresh message is on the high-priority queue, not the default one.
    wait_for(
        lambda: counts(core, "default:high") == {"visible": 0, "in_flight": 0, "delayed": 1},
        10,
        "the retry message on the high queue",
    )
    assert counts(core, "default") == {"visible": 0, "in_flight": 0, "delayed": 0}

    def second() -> bool:
        for d in core.transport.receive("default:high", 10, 1, 30):
            apply(core, d, worker.process(d))
        task = core.store.get(tid)
        return task is not None and task.status.final

    wait_for(second, 20, "the second attempt from the high queue")
    task = core.store.get(tid)
    assert task.status is TaskStatus.SUCCEEDED and task.result == 2


def test_queue_stats_report_each_priority_and_the_shared_dead_letter_queue_once(
    core: Enqueuer,
) -> None:
    core.enqueue_many(
        [TaskRequest(name="echo", priority="high")] + [TaskRequest(name="echo", priority="low")] * 2
    )
    rows = queue_stats(core.transport)
    assert [(r["queue"], r["priority"]) for r in rows] == [
        ("default", "high"),
        ("default", "default"),
        ("default", "low"),
    ]
    by_priority = {r["priority"]: r for r in rows}
    assert by_priority["high"]["visible"] == 1
    assert by_priority["default"]["visible"] == 0
    assert by_priority["low"]["visible"] == 2
    # The three share the default queue's DLQ: its count is on the default row only.
    assert by_priority["default"]["dead_letter"] == 0
    assert by_priority["high"]["dead_letter"] is None
    assert by_priority["low"]["dead_letter"] is None
