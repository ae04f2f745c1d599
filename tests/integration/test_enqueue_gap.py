"""A message whose task record does not exist: enqueue sends before it stores, so a
worker may receive it first (runs once the record lands), or the enqueuer died before
storing (dropped after the grace period, counted, nothing created or run)."""

from __future__ import annotations

from stratoq.adapters.transport import Outgoing, TaskMessage
from stratoq.core.clock import now_ms, to_ms
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.observability.metrics import Metrics, Recorder
from stratoq.observability.specs import MetricSpec
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Action
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import apply, pump_until_final, queue_counts


class Tally(Recorder):
    def __init__(self) -> None:
        self.names: list[str] = []

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        self.names.append(spec.name)


def send_first(core: Enqueuer, enqueued_ms: int) -> Task:
    """What an enqueuer does before it stores: the task built, its message sent."""
    task = core.build(TaskRequest(name="echo", payload={"n": 1}))
    msg = TaskMessage(task.id, task.tenant, name=task.name, enqueued_ms=enqueued_ms)
    core.transport.send([Outgoing("default", msg)])
    return task


def store(core: Enqueuer, task: Task) -> None:
    core.store.create(task, to_ms(task.created_at) or 0)


def test_a_record_landing_during_the_inline_rereads_runs_at_once(core: Enqueuer) -> None:
    task = send_first(core, now_ms())
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        if not waits:
            store(core, task)  # the enqueuer's write lands while the worker waits
        waits.append(seconds)

    worker = Worker(core.store, core.transport, InlineRunner(), sleep=sleep)
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert (disposition.action, disposition.status) == (Action.ACK, "succeeded")
    assert waits == [0.01]
    done = core.store.get(task.id)
    assert done is not None and (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 1)


def test_a_record_landing_after_the_hand_back_runs_once(core: Enqueuer) -> None:
    task = send_first(core, now_ms())
    worker = Worker(core.store, core.transport, InlineRunner(), sleep=lambda _: None)
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert (disposition.action, disposition.status) == (Action.ACK, "awaiting_record")
    apply(core, d, disposition)
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 1}
    assert core.store.get(task.id) is None  # a claim never creates the record
    store(core, task)
    [done] = pump_until_final(core, worker, [task.id])
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 1)


def test_a_record_that_never_lands_is_dropped_after_the_grace(core: Enqueuer) -> None:
    tally = Tally()
    offset = 0

    def clock() -> int:
        return now_ms() + offset

    worker = Worker(
        core.store,
        core.transport,
        InlineRunner(),
        metrics=Metrics([tally]),
        clock=clock,
        sleep=lambda _: None,
        orphan_grace_seconds=60,
    )
    task = send_first(core, now_ms())
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert disposition.status == "awaiting_record"
    apply(core, d, disposition)
    offset = 61_000  # the grace period since the enqueue is over when it comes back
    again: list = []
    while not again:
        again = core.transport.receive("default", 1, 1, 30)
    assert TaskMessage.decode(again[0].body).enqueued_ms == TaskMessage.decode(d.body).enqueued_ms
    disposition = worker.process(again[0])
    assert (disposition.action, disposition.status) == (Action.ACK, "orphan")
    apply(core, again[0], disposition)
    assert tally.names.count("stratoq_orphan_messages_total") == 1
    assert core.store.get(task.id) is None
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_a_message_of_a_stored_task_that_vanished_is_dropped_at_once(core: Enqueuer) -> None:
    # Re-sends and hops carry no enqueue time: no record means the task is gone.
    task = core.build(TaskRequest(name="echo"))
    core.transport.send([Outgoing("default", TaskMessage(task.id, task.tenant, name="echo"))])
    worker = Worker(core.store, core.transport, InlineRunner(), sleep=lambda _: None)
    [d] = core.transport.receive("default", 1, 1, 30)
    assert worker.process(d).status == "duplicate"
