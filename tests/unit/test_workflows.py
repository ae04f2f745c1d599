"""core.workflows: validation of the DAG, the builders and the failure policy's choices."""

from __future__ import annotations

import pytest

from stratoq.core.errors import InvalidWorkflowError
from stratoq.core.registry import TaskContext
from stratoq.core.workflows import (
    FailurePolicy,
    NodeRequest,
    NodeState,
    WorkflowStatus,
    after_failure,
    chain,
    child_id,
    chord,
    group,
    node_index,
    node_task_id,
    plan,
    workflow_status,
)


def nodes(spec: dict[str, list[str]]) -> list[NodeRequest]:
    return [NodeRequest(name=n, task="echo", depends_on=d) for n, d in spec.items()]


def test_plan_numbers_nodes_and_links_both_ways() -> None:
    g = plan(nodes({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}))
    assert g.names == ("a", "b", "c", "d")
    assert g.deps == ((), (0,), (0,), (1, 2))
    assert g.children == ((1, 2), (3,), (3,), ())
    assert (g.roots, g.sinks) == ([0], [3])


def test_a_repeated_dependency_counts_once() -> None:
    assert plan(nodes({"a": [], "b": ["a", "a"]})).deps == ((), (0,))


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"a": [], "b": ["x", "a", "y"]}, "nodes[1].depends_on", "unknown node(s): x, y"),
        ({"a": ["a"]}, "nodes[0].depends_on", "cycle: a -> a"),
        ({"a": [], "b": ["c"], "c": ["d"], "d": ["b"]}, "nodes[1].depends_on", "b -> d -> c -> b"),
    ],
)
def test_what_makes_no_dag_is_named(spec: dict[str, list[str]], field: str, message: str) -> None:
    with pytest.raises(InvalidWorkflowError) as err:
        plan(nodes(spec))
    assert err.value.field == field
    assert message in str(err.value)


def test_a_repeated_name_is_named() -> None:
    with pytest.raises(InvalidWorkflowError, match=r"'a' is used twice") as err:
        plan(nodes({"a": []}) + nodes({"a": []}))
    assert err.value.field == "nodes[1].name"


def test_builders_make_dags() -> None:
    c = chain(("add", {"n": 1}), {"task": "add", "payload": {"n": 2}, "name": "two"})
    assert [(n.name, n.depends_on) for n in c.nodes] == [("step-0", []), ("two", ["step-0"])]
    g = group(("echo", 1), ("echo", 2), on_failure="continue")
    assert [(n.name, n.depends_on) for n in g.nodes] == [("member-0", []), ("member-1", [])]
    assert g.on_failure is FailurePolicy.CONTINUE
    ch = chord([("echo", i) for i in range(3)], ("gather", None))
    assert ch.nodes[-1].name == "callback"
    assert ch.nodes[-1].depends_on == ["member-0", "member-1", "member-2"]
    assert plan(ch.nodes).sinks == [3]


def test_a_node_carries_its_task_options() -> None:
    node = NodeRequest(name="n", task="echo", payload=[1], queue="default", max_attempts=2)
    req = node.task_request()
    assert (req.name, req.payload, req.queue, req.max_attempts) == ("echo", [1], "default", 2)
    assert "timeout_seconds" not in req.model_fields_set  # left to the task's options


def test_stop_cancels_everything_not_ended_and_continue_only_dependents() -> None:
    # a -> b -> c, d (alone); a failed.
    children = {0: [1], 1: [2], 2: [], 3: []}
    states = {
        0: NodeState.STARTED,
        1: NodeState.WAITING,
        2: NodeState.WAITING,
        3: NodeState.STARTED,
    }
    assert after_failure(FailurePolicy.STOP, 0, states, children) == {1, 2, 3}
    assert after_failure(FailurePolicy.CONTINUE, 0, states, children) == {1, 2}
    ended = {**states, 3: NodeState.SUCCEEDED, 2: NodeState.CANCELLED}
    assert after_failure(FailurePolicy.STOP, 0, ended, children) == {1}


@pytest.mark.parametrize(
    ("left", "failed", "cancelled", "status"),
    [
        (1, True, True, WorkflowStatus.RUNNING),
        (0, False, False, WorkflowStatus.SUCCEEDED),
        (0, True, True, WorkflowStatus.FAILED),
        (0, False, True, WorkflowStatus.CANCELLED),
    ],
)
def test_workflow_status(left: int, failed: bool, cancelled: bool, status: WorkflowStatus) -> None:
    assert workflow_status(left, failed, cancelled) is status


def test_node_task_ids_are_fixed_and_carry_the_node() -> None:
    wf = "0190aabbccdd" + "11" * 10
    tid = node_task_id(wf, 10_000)
    assert len(tid) == 32 and tid.startswith(wf[:24])
    assert tid == node_task_id(wf, 10_000)
    assert node_index(tid) == 10_000


def test_parent_result_is_the_one_dependency_result() -> None:
    ctx = TaskContext("t", "n", 1, 1, 60, "tok", parent_results={"a": 5})
    assert ctx.parent_result == 5
    assert TaskContext("t", "n", 1, 1, 60, "tok").parent_result is None
    two = TaskContext("t", "n", 1, 1, 60, "tok", parent_results={"a": 1, "b": 2})
    assert two.parent_result is None


def test_spawn_works_only_inside_a_handler() -> None:
    with pytest.raises(RuntimeError, match="inside a task handler"):
        TaskContext("t", "n", 1, 1, 60, "tok").spawn("echo")


def test_child_ids_are_fixed_per_parent_and_order() -> None:
    parent = "0190aabbccdd" + "22" * 10
    ids = [child_id(parent, i) for i in range(3)]
    assert ids == [child_id(parent, i) for i in range(3)]
    assert len(set(ids)) == 3 and all(len(i) == 32 and i.startswith(parent[:12]) for i in ids)
