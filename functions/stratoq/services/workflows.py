"""Workflows: submit a DAG of tasks, start each node once its dependencies succeeded,
apply the failure policy, cancel, and show a workflow (docs/workflows.md).

The worker calls `Workflows.ended(task)` after it recorded a node's task as final (and
again when a later delivery of that task's message finds it final: the step is
idempotent, so a worker killed half-way is healed by the message's next delivery). It
does so only for tasks that carry a workflow id: other tasks cost no extra request.

Every step is a conditional write (adapters.store.workflows): a parent is counted once
on each child (`done` set), a node is started or cancelled once (its `state`), its task
is created once (fixed id), and a node without dependents is counted once on the
workflow (`sinks_done`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from stratoq.adapters.store import TaskStore
from stratoq.adapters.store.workflows import (
    WF_PREFIX,
    WorkflowStore,
    node_key,
    node_view,
    to_workflow,
    workflow_key,
)
from stratoq.core import registry
from stratoq.core.clock import now_ms
from stratoq.core.errors import InvalidStateError, TaskNotFoundError, WorkflowNotFoundError
from stratoq.core.ids import new_task_id
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.workflows import (
    FailurePolicy,
    NodeState,
    Workflow,
    WorkflowRequest,
    after_failure,
    child_id,
    node_index,
    node_task_id,
    plan,
)
from stratoq.services.enqueue import Enqueuer

logger = logging.getLogger(__name__)

# What the API does to each node's task request before anything is stored (checks the
# name and payload, fills the task's options), given the request and the field's path.
Prepare = Callable[[TaskRequest, str], TaskRequest]
RUNNABLE = (TaskStatus.QUEUED, TaskStatus.SCHEDULED, TaskStatus.RETRYING)


class Workflows:
    """Workflows over the task table and the task queues."""

    def __init__(
        self,
        store: WorkflowStore,
        tasks: TaskStore,
        enqueuer: Enqueuer,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.tasks = tasks
        self.enqueuer = enqueuer
        self._clock = clock

    # ----------------------------------------------------------------- submit
    def submit(
        self,
        request: WorkflowRequest,
        tenant: str,
        prepare: Prepare | None = None,
        *,
        workflow_id: str | None = None,
        parent_id: str | None = None,
    ) -> Workflow:
        """Store the workflow and its nodes, then enqueue the nodes without
        dependencies. Raises InvalidWorkflowError (400) naming what makes no DAG, and
        the task errors of enqueue (unknown queue, payload too large) for a node.

        With a fixed `workflow_id` (a handler's sub-workflow), a workflow stored already
        under it only has its first nodes started again (idempotently): a submit cut
        short by a crash is finished by its repeat, and a repeat makes nothing twice."""
        graph = plan(request.nodes)
        now = self._clock()
        wf_id = workflow_id or new_task_id(now)
        if workflow_id is not None:
            existing = self.store.workflow(wf_id, tenant)
            if existing is not None:
                nodes_now = self.store.nodes(wf_id, graph.roots)
                for i in graph.roots:
                    self._ensure_task(wf_id, i, nodes_now[i])
                return to_workflow(existing)
        tasks: list[Task] = []
        nodes: list[dict[str, Any]] = []
        for i, node in enumerate(request.nodes):
            req = node.task_request()
            if prepare is not None:
                req = prepare(req, f"nodes[{i}]")
            task = self._node_task(
                self.enqueuer.build(req, tenant), wf_id, i, node.name, graph.children[i]
            )
            task.workflow_deps = len(graph.deps[i])
            tasks.append(task)
            nodes.append(
                {
                    "pk": node_key(wf_id, i),
                    "tenant": tenant,
                    "node": node.name,
                    "task": req.name,
                    "request": req.model_dump_json(exclude={"payload"}, exclude_unset=True),
                    "payload": self.store.encode_payload(req.payload, tenant, task.id),
                    "children": list(graph.children[i]),
                    "ndeps": len(graph.deps[i]),
                    "remaining": len(graph.deps[i]),
                    "state": NodeState.STARTED if not graph.deps[i] else NodeState.WAITING,
                }
            )
        item = {
            "pk": workflow_key(wf_id),
            "tenant": tenant,
            "listed": WF_PREFIX + tenant,
            "label": request.name,
            "policy": request.on_failure.value,
            "count": len(nodes),
            "sinks_left": len(graph.sinks),
            "created_at": now,
            "parent": parent_id,
        }
        self.store.create(item, nodes)
        roots = [tasks[i] for i in graph.roots]
        # Messages first, then the tasks: as every enqueue ("The enqueue gap").
        self.enqueuer.send_new(roots)
        self.tasks.create_many(roots)
        self.enqueuer.events.queued(roots)
        return to_workflow(item)

    def _node_task(
        self, task: Task, wf_id: str, index: int, name: str, children: Sequence[int]
    ) -> Task:
        return task.model_copy(
            update={
                "id": node_task_id(wf_id, index),
                "workflow_id": wf_id,
                "workflow_node": name,
                "workflow_children": [int(c) for c in children],
            }
        )

    # ------------------------------------------------------ a node has ended
    def ended(self, task: Task) -> None:
        """React to a node's task reaching a final status; safe to call again."""
        wf_id = task.workflow_id
        if wf_id is None:
            return
        index = node_index(task.id)
        # The node's dependents come with its task (no read): a chord member's end is
        # one conditional update of the callback's item.
        children = task.workflow_children
        if task.status is TaskStatus.SUCCEEDED:
            for child in children:
                self._arrive(wf_id, child, index)
        elif task.status is TaskStatus.FAILED:
            self._failed(wf_id, index, children)
        elif task.status is TaskStatus.CANCELLED:
            self.store.move(wf_id, index, NodeState.CANCELLED, [NodeState.STARTED])
            self.store.flag(wf_id, "cancelled")
            self._cancel_descendants(wf_id, children)
        else:
            return
        if not children:
            self._sink(wf_id, index)

    def _arrive(self, wf_id: str, child: int, parent: int) -> None:
        _, node = self.store.arrive(wf_id, child, parent)
        # Counted now or before (a repeat): whoever sees 0 starts the child, and starting
        # is idempotent, so a start cut short by a crash is finished by the repeat.
        if node and int(node.get("remaining", 1)) <= 0:
            self._start(wf_id, child, node)

    def _start(self, wf_id: str, index: int, node: dict[str, Any]) -> None:
        state = node.get("state")
        if state == NodeState.WAITING:
            if self.store.move(wf_id, index, NodeState.STARTED, [NodeState.WAITING]):
                state = NodeState.STARTED
            else:
                state = self._state(wf_id, index)
        if state != NodeState.STARTED:
            return  # cancelled meanwhile
        if not self._ensure_task(wf_id, index, node):
            return
        # The workflow may have been stopped between our move and the task's creation;
        # the sweep that stopped it cannot cancel a task that did not exist yet, so this
        # start looks once more and cancels the task itself.
        wf = self.store.workflow(wf_id)
        if wf is not None and _stopping(wf):
            self._cancel_started(wf_id, index, node["tenant"], node)

    def _ensure_task(self, wf_id: str, index: int, node: dict[str, Any]) -> bool:
        """Create node `index`'s task unless it exists, and send its message; False if
        it exists and is past waiting (nothing sent)."""
        tenant = node["tenant"]
        task_id = node_task_id(wf_id, index)
        request = TaskRequest.model_validate_json(node["request"]).model_copy(
            update={"payload": self.store.decode_payload(node, task_id)}
        )
        task = self._node_task(
            self.enqueuer.build(request, tenant), wf_id, index, node["node"], node["children"]
        )
        task.workflow_deps = int(node.get("ndeps", 0))
        return self._create(task)

    def _create(self, task: Task) -> bool:
        """Send a fixed-id task's message, then store it unless it exists (a repeat: its
        message goes again only while it waits to run, which claims deduplicate)."""
        self.enqueuer.send_new([task])
        if self.store.create_task(task):
            # Stored now, as an enqueue stores a task: its `queued` event (a repeat
            # creates nothing and sends none; the worker sends the rest).
            self.enqueuer.events.queued([task])
            return True
        existing = self.tasks.get(task.id)
        return existing is not None and existing.status in RUNNABLE

    # -------------------------------------------------- children of a handler
    def spawn(self, parent: Task, children: Sequence[TaskRequest | WorkflowRequest]) -> None:
        """Make what a handler spawned (`context().spawn`, `spawn_workflow`), each under
        an id derived from the parent's and its order, so a repeat makes nothing twice."""
        for i, child in enumerate(children):
            cid = child_id(parent.id, i)
            if isinstance(child, WorkflowRequest):
                self.submit(
                    child, parent.tenant, _task_options, workflow_id=cid, parent_id=parent.id
                )
                continue
            request = _task_options(child, "")
            task = self.enqueuer.build(request, parent.tenant)
            self._create(task.model_copy(update={"id": cid, "parent_id": parent.id}))

    def _failed(self, wf_id: str, index: int, children: Sequence[int]) -> None:
        self.store.flag(wf_id, "failed")
        wf = self.store.workflow(wf_id)
        if wf is None:
            return
        if FailurePolicy(wf["policy"]) is FailurePolicy.STOP:
            self._cancel_all(wf_id, index, int(wf["count"]))
        else:
            self._cancel_descendants(wf_id, children)

    def _cancel_all(self, wf_id: str, index: int | None, count: int) -> None:
        """`stop` once node `index` failed, or a user's cancel (None): cancel every
        node that has not ended (one read of every node item)."""
        nodes = self.store.nodes(wf_id, range(count))
        states = {i: NodeState(n["state"]) for i, n in nodes.items()}
        children = {i: [int(c) for c in n.get("children", [])] for i, n in nodes.items()}
        if index is None:
            doomed = {i for i, s in states.items() if not s.final}
        else:
            doomed = after_failure(FailurePolicy.STOP, index, states, children)
        for j in sorted(doomed):
            self._cancel_node(wf_id, j, nodes[j])

    def _cancel_descendants(self, wf_id: str, children: Sequence[int]) -> None:
        """`continue` once a node failed, or a node's task was cancelled: cancel the
        nodes that depend on it, directly or not (none of them can have started), read
        level by level from its dependents (a chord member reads only the callback)."""
        seen: set[int] = set()
        frontier = list(dict.fromkeys(children))
        while frontier:
            seen.update(frontier)
            found = self.store.nodes(wf_id, frontier)
            after: list[int] = []
            for j in frontier:
                node = found.get(j)
                if node is None:
                    continue
                if not NodeState(node["state"]).final:
                    self._cancel_node(wf_id, j, node)
                after.extend(int(c) for c in node.get("children", []))
            frontier = [c for c in dict.fromkeys(after) if c not in seen]

    def _cancel_node(self, wf_id: str, index: int, node: dict[str, Any]) -> None:
        state = node["state"]
        if state == NodeState.WAITING:
            if self.store.move(wf_id, index, NodeState.CANCELLED, [NodeState.WAITING]):
                self._node_ended(wf_id, index, node)
                return
            state = self._state(wf_id, index)  # started meanwhile
        if state == NodeState.STARTED:
            self._cancel_started(wf_id, index, node["tenant"], node)

    def _state(self, wf_id: str, index: int) -> str | None:
        node = self.store.node(wf_id, index)
        return None if node is None else str(node["state"])

    def _cancel_started(self, wf_id: str, index: int, tenant: str, node: dict[str, Any]) -> None:
        try:
            self.tasks.cancel(node_task_id(wf_id, index), tenant, self._clock())
        except InvalidStateError:
            return  # running or ended: it ends on its own and its worker reports it
        except TaskNotFoundError:
            return  # not created yet: its starter sees the stop and cancels it
        if self.store.move(wf_id, index, NodeState.CANCELLED, [NodeState.STARTED]):
            self._node_ended(wf_id, index, node)

    def _node_ended(self, wf_id: str, index: int, node: dict[str, Any]) -> None:
        if not node.get("children"):
            self._sink(wf_id, index)

    def _sink(self, wf_id: str, index: int) -> None:
        wf = self.store.sink_ended(wf_id, index)
        if wf is not None and int(wf.get("sinks_left", 1)) <= 0:
            self.store.finish(wf_id, self._clock())

    # ------------------------------------------------------------ user actions
    def cancel(self, wf_id: str, tenant: str) -> Workflow:
        """Cancel every node that has not started; running ones finish. 409 once the
        workflow has ended."""
        wf = self.store.workflow(wf_id, tenant)
        if wf is None:
            raise WorkflowNotFoundError(f"no workflow {wf_id}")
        if not self.store.flag(wf_id, "cancelled", only_running=True):
            raise InvalidStateError(f"cannot cancel workflow {wf_id}: it has ended")
        self._cancel_all(wf_id, None, int(wf["count"]))
        return self.get(wf_id, tenant)

    def get(self, wf_id: str, tenant: str) -> Workflow:
        """The workflow with each node's status, result and times."""
        wf = self.store.workflow(wf_id, tenant)
        if wf is None:
            raise WorkflowNotFoundError(f"no workflow {wf_id}")
        count = int(wf["count"])
        nodes = self.store.nodes(wf_id, range(count))
        tasks = self.store.tasks(
            node_task_id(wf_id, i) for i, n in nodes.items() if n["state"] != NodeState.WAITING
        )
        parents: dict[int, list[str]] = {i: [] for i in range(count)}
        for i in range(count):
            for c in nodes[i].get("children", []):
                parents[int(c)].append(nodes[i]["node"])
        shown = [node_view(wf_id, i, nodes[i], parents[i], tasks) for i in range(count)]
        return to_workflow(wf).model_copy(update={"nodes": shown})

    def list(
        self, tenant: str, limit: int = 50, next_token: str | None = None
    ) -> tuple[list[Workflow], str | None]:
        """A page of the tenant's workflows, newest first (no nodes)."""
        items, token = self.store.list_workflows(tenant, limit, next_token)
        return [to_workflow(i) for i in items], token

    # --------------------------------------------------- what a node's task sees
    def parent_results(self, task: Task) -> dict[str, Any]:
        """Node name -> result of each dependency of a node's task (all succeeded)."""
        if task.workflow_id is None or not task.workflow_deps:
            return {}  # no read for a node without dependencies
        node = self.store.node(task.workflow_id, node_index(task.id))
        done: Sequence[int] = sorted(int(p) for p in (node or {}).get("done", ()))
        found = self.store.tasks(node_task_id(task.workflow_id, p) for p in done)
        return {t.workflow_node or t.id: t.result for t in found.values()}


def _task_options(request: TaskRequest, path: str) -> TaskRequest:
    """A spawned task's request, its task's own options filled (the worker has loaded
    the tasks module), as the API fills them."""
    return registry.apply_options(request, registry.options(request.name))


def _stopping(wf: dict[str, Any]) -> bool:
    """Whether nothing more may start: cancelled, or failed under `stop`."""
    return bool(wf.get("cancelled")) or (
        bool(wf.get("failed")) and wf.get("policy") == FailurePolicy.STOP
    )
