"""A task whose name this worker has no handler for: handed back unclaimed, no attempt
spent, until its grace period ends; then it fails as `unknown_task` (issue: two worker
fleets sharing a queue lost every task of the other fleet's module at once)."""

from __future__ import annotations

import time

from stratoq.adapters.transport import Outgoing, TaskMessage
from stratoq.core.clock import now_ms
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.observability.metrics import Metrics, Recorder
from stratoq.observability.specs import MetricSpec
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Action
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import apply, pump_until_final, queue_counts


class Tally(Recorder):
    def __init__(self) -> None:
        self.counts: list[tuple[str, dict[str, str]]] = []

    def count(self, spec: MetricSpec, labels: dict[str, str], value: float) -> None:
        self.counts.append((spec.name, labels))

    def unknown(self, outcome: str) -> int:
        return sum(
            1
            for name, labels in self.counts
            if name == "stratoq_tasks_unknown_total" and labels["outcome"] == outcome
        )


def test_the_message_names_the_task(core: Enqueuer) -> None:
    tid = core.enqueue(TaskRequest(name="echo", payload=1)).task.id
    [d] = core.transport.receive("default", 1, 1, 30)
    assert TaskMessage.decode(d.body) == TaskMessage(tid, "default", name="echo")


def test_an_unknown_name_is_handed_back_without_a_claim(core: Enqueuer) -> None:
    tally = Tally()
    worker = Worker(core.store, core.transport, InlineRunner(), metrics=Metrics([tally]))
    tid = core.enqueue(TaskRequest(name="other_fleets_task", payload={"a": 1})).task.id
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert (disposition.action, disposition.status) == (Action.ACK, "handed_back")
    apply(core, d, disposition)
    task = core.store.get(tid)
    assert task is not None
    assert (task.status, task.attempts, task.errors) == (TaskStatus.QUEUED, 0, [])
    # A fresh message, delayed a second or two, carries the time of the first hand-back.
    assert queue_counts(core) == {"visible": 0, "in_flight": 0, "delayed": 1}
    deadline = time.monotonic() + 10
    again = []
    while not again and time.monotonic() < deadline:
        again = core.transport.receive("default", 1, 1, 30)
    msg = TaskMessage.decode(again[0].body)
    assert msg.name == "other_fleets_task" and msg.unknown_since_ms is not None
    assert tally.unknown("handed_back") == 1 and tally.unknown("failed") == 0


def test_after_the_grace_period_it_fails_as_unknown_task(core: Enqueuer) -> None:
    tally = Tally()
    worker = Worker(
        core.store,
        core.transport,
        InlineRunner(),
        metrics=Metrics([tally]),
        unknown_task_grace_seconds=2,
    )
    tid = core.enqueue(TaskRequest(name="nobody_knows_me", max_attempts=5)).task.id
    [task] = pump_until_final(core, worker, [tid])
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 1
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, "unknown_task")]
    assert "no handler registered for task 'nobody_knows_me'" in task.errors[0].message
    assert tally.unknown("handed_back") >= 1 and tally.unknown("failed") == 1


def test_a_message_without_a_name_is_claimed_given_back_and_handed_on_named(
    core: Enqueuer,
) -> None:
    # Messages sent before names travelled in them: the claim reveals the name.
    worker = Worker(core.store, core.transport, InlineRunner())
    task, _ = core.store.create(core.build(TaskRequest(name="old_fleets_task")), now_ms())
    core.transport.send([Outgoing("default", TaskMessage(task.id, task.tenant))])
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert disposition.status == "handed_back"
    apply(core, d, disposition)
    after = core.store.get(task.id)
    assert after is not None
    assert (after.status, after.attempts, after.errors) == (TaskStatus.QUEUED, 0, [])
    deadline = time.monotonic() + 10
    again = []
    while not again and time.monotonic() < deadline:
        again = core.transport.receive("default", 1, 1, 30)
    assert TaskMessage.decode(again[0].body).name == "old_fleets_task"
