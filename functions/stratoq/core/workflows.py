"""Workflows as pure data: nodes with `depends_on`, their validation, and the decisions
the workflow service takes when a node ends (docs/workflows.md).

A workflow is a DAG of nodes; each node is one task. A chain, a group and a chord are
DAGs built by `chain`, `group` and `chord`. `plan` checks a request (unique names, known
dependencies, no cycle) and numbers the nodes; the store keeps nodes by number. Nothing
here touches AWS: `services.workflows` applies these decisions with conditional writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratoq.core.clock import Timestamp
from stratoq.core.errors import InvalidWorkflowError
from stratoq.core.models import (
    MAX_ATTEMPTS,
    MAX_DELAY_SECONDS,
    MAX_TIMEOUT_SECONDS,
    Backoff,
    Priority,
    QueueName,
    TaskName,
    TaskRequest,
)

# A chord of 10,000 members plus its callback fits.
MAX_NODES = 10_001
NODE_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$"


class FailurePolicy(StrEnum):
    """What a node's final failure does to the rest of its workflow."""

    # Every node that has not started ends `cancelled`; the workflow is failed.
    STOP = "stop"
    # Nodes that depend (directly or not) on the failed node end `cancelled`; the others
    # run; the workflow ends `failed` once they are done.
    CONTINUE = "continue"


class NodeState(StrEnum):
    """A node's own state, as its item stores it (its task has the finer one)."""

    WAITING = "waiting"  # a dependency has not succeeded yet
    STARTED = "started"  # its task was enqueued (it may be queued, running, retrying)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (NodeState.SUCCEEDED, NodeState.FAILED, NodeState.CANCELLED)


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# -------------------------------------------------------------------- requests
class NodeRequest(BaseModel):
    """One node: a task (name, payload, options) and the nodes it waits for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NODE_NAME_PATTERN, description="the node's id in its workflow")
    task: TaskName = Field(description="the task name to run")
    payload: Any = None
    depends_on: list[str] = Field(
        default_factory=list, description="names of the nodes that must succeed first"
    )
    queue: QueueName | None = None
    priority: Priority | None = None
    delay_seconds: int | None = Field(
        default=None, ge=0, le=MAX_DELAY_SECONDS, description="wait this long once ready"
    )
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    backoff: Backoff | None = None

    def task_request(self) -> TaskRequest:
        """The task this node enqueues (options left out stay unset)."""
        fields = self.model_dump(
            exclude={"name", "task", "depends_on"}, exclude_none=True, exclude_unset=True
        )
        return TaskRequest(name=self.task, **fields)


class WorkflowRequest(BaseModel):
    """A workflow to run: its nodes (a DAG) and its failure policy."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=128, description="a label, for people")
    nodes: list[NodeRequest] = Field(min_length=1, max_length=MAX_NODES)
    on_failure: FailurePolicy = FailurePolicy.STOP


# --------------------------------------------------------------------- answers
class WorkflowNode(BaseModel):
    """A node as `GET /v1/workflows/{id}` shows it."""

    name: str
    task: str
    task_id: str
    depends_on: list[str]
    status: str = Field(
        description="waiting (for a dependency), cancelled before it started, or its "
        "task's status: scheduled, queued, running, retrying, succeeded, failed, cancelled"
    )
    result: Any = None
    error: str | None = Field(default=None, description="the last attempt's error, if any")
    attempts: int = 0
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None


class Workflow(BaseModel):
    """A workflow: its status, counts of nodes by status and (`GET` by id) its nodes."""

    id: str
    name: str
    status: WorkflowStatus
    on_failure: FailurePolicy
    created_at: Timestamp
    finished_at: Timestamp | None = None
    node_count: int
    parent_id: str | None = Field(
        default=None, description="the task whose handler spawned it (null: none)"
    )
    nodes: list[WorkflowNode] | None = Field(
        default=None, description="in request order; left out of lists"
    )


class WorkflowPage(BaseModel):
    workflows: list[Workflow]
    next_token: str | None


# ----------------------------------------------------------------- the graph
@dataclass(frozen=True)
class Graph:
    """A validated DAG: node i's dependencies and dependents, by number."""

    names: tuple[str, ...]
    deps: tuple[tuple[int, ...], ...]
    children: tuple[tuple[int, ...], ...]

    @property
    def roots(self) -> list[int]:
        return [i for i, d in enumerate(self.deps) if not d]

    @property
    def sinks(self) -> list[int]:
        return [i for i, c in enumerate(self.children) if not c]


def plan(nodes: Sequence[NodeRequest]) -> Graph:
    """Number the nodes and check they make a DAG; raises InvalidWorkflowError naming
    the repeated name, the unknown dependencies or the nodes of a cycle."""
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in index:
            raise InvalidWorkflowError(
                f"node name {node.name!r} is used twice (nodes[{index[node.name]}] and nodes[{i}])",
                field=f"nodes[{i}].name",
            )
        index[node.name] = i
    deps: list[tuple[int, ...]] = []
    for i, node in enumerate(nodes):
        unknown = [d for d in node.depends_on if d not in index]
        if unknown:
            raise InvalidWorkflowError(
                f"nodes[{i}] ({node.name}) depends on unknown node(s): {', '.join(unknown)}",
                field=f"nodes[{i}].depends_on",
            )
        deps.append(tuple(dict.fromkeys(index[d] for d in node.depends_on)))
    children: list[list[int]] = [[] for _ in nodes]
    for i, ds in enumerate(deps):
        for d in ds:
            children[d].append(i)
    cycle = _cycle(deps)
    if cycle:
        names = " -> ".join(nodes[i].name for i in cycle)
        raise InvalidWorkflowError(
            f"the nodes form a cycle: {names}",
            field=f"nodes[{cycle[0]}].depends_on",
        )
    return Graph(tuple(n.name for n in nodes), tuple(deps), tuple(tuple(c) for c in children))


def _cycle(deps: Sequence[Sequence[int]]) -> list[int]:
    """A cycle of the graph as node numbers, first repeated last ([] if none)."""
    left = [len(d) for d in deps]
    children: list[list[int]] = [[] for _ in deps]
    for i, ds in enumerate(deps):
        for d in ds:
            children[d].append(i)
    ready = [i for i, n in enumerate(left) if n == 0]
    while ready:
        i = ready.pop()
        for c in children[i]:
            left[c] -= 1
            if left[c] == 0:
                ready.append(c)
    stuck = {i for i, n in enumerate(left) if n > 0}
    if not stuck:
        return []
    # Every stuck node has a stuck dependency: walk them until one repeats.
    seen: dict[int, int] = {}
    path: list[int] = []
    node = min(stuck)
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(d for d in deps[node] if d in stuck)
    # The walk followed dependencies; the cycle reads in run order (x -> y: y needs x).
    loop = path[seen[node] :]
    return [loop[0], *reversed(loop[1:]), loop[0]]


# --------------------------------------------------------------- decisions
def descendants(children: Mapping[int, Sequence[int]], start: int) -> set[int]:
    """Every node that depends on `start`, directly or not."""
    found: set[int] = set()
    todo = list(children.get(start, ()))
    while todo:
        node = todo.pop()
        if node not in found:
            found.add(node)
            todo.extend(children.get(node, ()))
    return found


def after_failure(
    policy: FailurePolicy,
    failed: int,
    states: Mapping[int, NodeState],
    children: Mapping[int, Sequence[int]],
) -> set[int]:
    """The nodes to cancel once node `failed` failed for good.

    `stop`: every node that has not ended (the ones already running refuse the cancel
    of their task and finish on their own). `continue`: the nodes that depend on the
    failed one, which can never run; the rest go on.
    """
    if policy is FailurePolicy.STOP:
        return {i for i, s in states.items() if not s.final and i != failed}
    return {i for i in descendants(children, failed) if not states[i].final}


def workflow_status(sinks_left: int, failed: bool, cancelled: bool) -> WorkflowStatus:
    """A workflow runs until every node without dependents has ended; then it failed if
    a node failed, was cancelled if a node was cancelled, and succeeded otherwise."""
    if sinks_left > 0:
        return WorkflowStatus.RUNNING
    if failed:
        return WorkflowStatus.FAILED
    return WorkflowStatus.CANCELLED if cancelled else WorkflowStatus.SUCCEEDED


def node_index(task_id: str) -> int:
    """The node number a node's task id carries (see `node_task_id`)."""
    return int(task_id[24:], 16)


def child_id(parent_id: str, index: int) -> str:
    """The id of the `index`-th child (task or workflow) a task's handler spawned: the
    same on every attempt, so a retried attempt finds what an earlier one made. Its
    first 12 hex digits are the parent's time, as a fresh id's are its own."""
    digest = hashlib.sha256(f"{parent_id}/{index}".encode()).hexdigest()
    return parent_id[:12] + digest[:20]


def node_task_id(workflow_id: str, index: int) -> str:
    """Node `index`'s task id: fixed when the workflow is made, so starting a node twice
    (a completion delivered again) finds the task it made the first time."""
    return f"{workflow_id[:24]}{index:08x}"


# ------------------------------------------------------------------ builders
Step = NodeRequest | Mapping[str, Any] | tuple[str, Any]


def _node(step: Step, name: str, depends_on: Iterable[str]) -> NodeRequest:
    if isinstance(step, NodeRequest):
        data = step.model_dump(exclude_unset=True)
    elif isinstance(step, tuple):
        data = {"task": step[0], "payload": step[1]}
    else:
        data = dict(step)
    data.setdefault("name", name)
    data["depends_on"] = [*data.get("depends_on", []), *depends_on]
    return NodeRequest.model_validate(data)


def chain(*steps: Step, **options: Any) -> WorkflowRequest:
    """Steps one after another; each sees the previous one's result as
    `context().parent_result`. A step is a NodeRequest, a dict of its fields (`task`,
    `payload`, ...) or a `(task, payload)` pair; unnamed steps are called `step-<i>`."""
    nodes: list[NodeRequest] = []
    for i, step in enumerate(steps):
        nodes.append(_node(step, f"step-{i}", [nodes[-1].name] if nodes else []))
    return WorkflowRequest(nodes=nodes, **options)


def group(*members: Step, **options: Any) -> WorkflowRequest:
    """Members in parallel (unnamed ones are `member-<i>`); the workflow's nodes list
    their results in order."""
    nodes = [_node(m, f"member-{i}", []) for i, m in enumerate(members)]
    return WorkflowRequest(nodes=nodes, **options)


def chord(members: Sequence[Step], callback: Step, **options: Any) -> WorkflowRequest:
    """A group and a callback that runs once, after every member succeeded, with their
    results in `context().parent_results` (member name -> result)."""
    nodes = [_node(m, f"member-{i}", []) for i, m in enumerate(members)]
    nodes.append(_node(callback, "callback", [n.name for n in nodes]))
    return WorkflowRequest(nodes=nodes, **options)
