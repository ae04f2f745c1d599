"""Workflows on the emulator: the fan-in's conditional writes and a DAG run by a worker.

Completions delivered twice count once, nodes start once, and the failure policies
cancel what they should (services.workflows, adapters.store.workflows)."""

from __future__ import annotations

import pytest

from stratoq.core.errors import InvalidStateError, InvalidWorkflowError
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.core.workflows import (
    NodeRequest,
    WorkflowRequest,
    WorkflowStatus,
    chain,
    child_id,
    chord,
    node_task_id,
)
from stratoq.services.app import Services
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import pump_until_final, run_until_ended


@pytest.fixture
def services(settings: Settings) -> Services:
    return Services(settings)


@pytest.fixture
def worker(services: Services) -> Worker:
    return services.worker(InlineRunner())


def test_a_completion_delivered_twice_decrements_once(services: Services) -> None:
    wf = services.workflows.submit(
        chord([("echo", i) for i in range(3)], ("gather", None)), "default"
    )
    store = services.workflows.store
    counted, node = store.arrive(wf.id, 3, 0)
    assert counted and node["remaining"] == 2
    counted, node = store.arrive(wf.id, 3, 0)  # the same parent again
    assert not counted and node["remaining"] == 2
    store.arrive(wf.id, 3, 1)
    counted, node = store.arrive(wf.id, 3, 2)
    assert counted and node["remaining"] == 0 and node["done"] == {0, 1, 2}


def test_a_chain_passes_each_result_on(services: Services, worker: Worker) -> None:
    steps = [{"task": "add_to_parent", "payload": {"n": n}} for n in (1, 10, 100)]
    wf = services.workflows.submit(chain(*steps), "default")
    run_until_ended(services, worker, wf.id)
    got = services.workflows.get(wf.id, "default")
    assert got.status is WorkflowStatus.SUCCEEDED
    assert [(n.name, n.status, n.result) for n in got.nodes or []] == [
        ("step-0", "succeeded", 1),
        ("step-1", "succeeded", 11),
        ("step-2", "succeeded", 111),
    ]
    assert got.finished_at is not None


def test_the_callback_starts_once_when_every_completion_comes_twice(
    services: Services, worker: Worker
) -> None:
    wf = services.workflows.submit(
        chord([("echo", i) for i in range(4)], ("gather", "cb")), "default"
    )
    run_until_ended(services, worker, wf.id)
    # Every member's completion reported again (a worker killed after recording it).
    for i in range(4):
        task = services.store.get(node_task_id(wf.id, i))
        assert task is not None
        services.workflows.ended(task)
    got = services.workflows.get(wf.id, "default")
    callback = (got.nodes or [])[-1]
    assert callback.status == "succeeded" and callback.attempts == 1
    assert callback.result == {
        "parents": {f"member-{i}": i for i in range(4)},
        "payload": "cb",
    }
    node = services.workflows.store.node(wf.id, 4)
    assert node is not None and node["remaining"] == 0  # not below


def test_a_start_cut_short_is_finished_by_the_repeat(services: Services) -> None:
    wf = services.workflows.submit(chain(("echo", 1), ("echo", 2)), "default")
    store = services.workflows.store
    # A worker died after the count and before the child's task was stored.
    store.arrive(wf.id, 1, 0)
    assert services.store.get(node_task_id(wf.id, 1)) is None
    first = services.store.get(node_task_id(wf.id, 0))
    assert first is not None
    services.workflows.ended(first.model_copy(update={"status": TaskStatus.SUCCEEDED}))
    child = services.store.get(node_task_id(wf.id, 1))
    assert child is not None and child.status is TaskStatus.QUEUED
    assert child.workflow_id == wf.id and child.workflow_node == "step-1"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # `gate` may run in the same batch as `bad`, before it fails, or be cancelled.
        ("stop", [{"failed"}, {"cancelled"}, {"succeeded", "cancelled"}, {"cancelled"}]),
        ("continue", [{"failed"}, {"cancelled"}, {"succeeded"}, {"succeeded"}]),
    ],
)
def test_failure_policies(
    services: Services, worker: Worker, policy: str, expected: list[set[str]]
) -> None:
    # bad -> after_bad; gate -> ok: a failure stops everything or only its own branch.
    nodes = [
        NodeRequest(name="bad", task="give_up"),
        NodeRequest(name="after_bad", task="echo", depends_on=["bad"]),
        NodeRequest(name="gate", task="echo"),
        NodeRequest(name="ok", task="echo", payload=1, depends_on=["gate"]),
    ]
    request = WorkflowRequest.model_validate({"nodes": nodes, "on_failure": policy})
    wf = services.workflows.submit(request, "default")
    run_until_ended(services, worker, wf.id)
    got = services.workflows.get(wf.id, "default")
    assert got.status is WorkflowStatus.FAILED
    statuses = [n.status for n in got.nodes or []]
    assert all(s in allowed for s, allowed in zip(statuses, expected, strict=True)), statuses


def test_cancel_cancels_what_has_not_started(services: Services) -> None:
    wf = services.workflows.submit(chain(("echo", 1), ("echo", 2), ("echo", 3)), "default")
    got = services.workflows.cancel(wf.id, "default")
    assert got.status is WorkflowStatus.CANCELLED
    assert [n.status for n in got.nodes or []] == ["cancelled"] * 3
    with pytest.raises(InvalidStateError, match="ended"):
        services.workflows.cancel(wf.id, "default")


def test_cycles_and_unknown_names_are_refused(services: Services) -> None:
    cyclic = [
        NodeRequest(name="a", task="echo", depends_on=["b"]),
        NodeRequest(name="b", task="echo", depends_on=["a"]),
    ]
    with pytest.raises(InvalidWorkflowError, match=r"cycle: (a -> b -> a|b -> a -> b)"):
        services.workflows.submit(WorkflowRequest(nodes=cyclic), "default")
    assert services.workflows.list("default")[0] == []


def test_a_handler_spawns_tasks_and_a_sub_workflow_once(services: Services, worker: Worker) -> None:
    parent_id = services.enqueuer.enqueue(
        TaskRequest(name="spawner", payload={"tasks": 2, "chain": True})
    ).task.id
    [parent] = pump_until_final(services.enqueuer, worker, [parent_id])
    assert parent.status is TaskStatus.SUCCEEDED
    kids = [services.store.get(child_id(parent_id, i)) for i in range(2)]
    assert all(k is not None and k.parent_id == parent_id for k in kids)
    [k0, k1] = pump_until_final(
        services.enqueuer, worker, [child_id(parent_id, i) for i in range(2)]
    )
    assert (k0.result, k1.result) == ({"child": 0}, {"child": 1})
    sub = services.workflows.get(child_id(parent_id, 2), "default")
    assert sub.parent_id == parent_id
    run_until_ended(services, worker, sub.id)
    assert [n.result for n in services.workflows.get(sub.id, "default").nodes or []] == [1, 3]
    # The attempt's children made again (a worker killed before recording the parent):
    # the same ids, nothing new, nothing run twice.
    again = [
        TaskRequest(name="echo", payload={"child": 0}),
        TaskRequest(name="echo", payload={"child": 1}),
    ]
    services.workflows.spawn(parent, [*again, chain(("echo", 1), ("echo", 2))])
    assert services.store.get(child_id(parent_id, 0)) == k0
    done = services.workflows.get(sub.id, "default")
    assert done.status is WorkflowStatus.SUCCEEDED and [n.attempts for n in done.nodes or []] == [
        1,
        1,
    ]
