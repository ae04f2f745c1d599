"""Workflow items of the task table and their conditional writes (docs/workflows.md).

- a **workflow** item, `pk` = "wf#<id>": `tenant`, `label`, `policy`, `count` (nodes),
  `sinks_left` (nodes without dependents that have not ended), `sinks_done` (the set of
  those that have), `failed`/`cancelled` flags, `created_at`, `finished_at`. It carries
  `listed` = "wf#<tenant>", so the `listing` index lists a tenant's workflows newest
  first in a partition of their own, apart from its tasks.
- a **node** item per node, `pk` = "wfn#<id>#<number>": `node` (its name), `task` (task
  name), `request` (the task's options, JSON), `payload` (stored as a task's payload is,
  encrypted under the node's task id), `children` (numbers of the nodes that depend on
  it), `ndeps`, `remaining` (dependencies not succeeded yet), `done` (the set of the
  dependencies that have: what makes a completion delivered twice count once), `state`.

No attribute is called `name`: items with a `name` are tasks to the rest of the store.
The node's task id is fixed (`core.workflows.node_task_id`), so its task item is created
at most once whoever starts it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from stratoq.adapters.crypto import decode_value, encode_value
from stratoq.adapters.store.base import StoreBase
from stratoq.adapters.store.codec import dump, item_to_task, load, task_to_item, vals
from stratoq.core.clock import from_ms
from stratoq.core.models import Task
from stratoq.core.workflows import (
    FailurePolicy,
    Workflow,
    WorkflowNode,
    node_task_id,
    workflow_status,
)

BATCH_GET_LIMIT = 100
BATCH_WRITE_LIMIT = 25
WF_PREFIX = "wf#"


def workflow_key(workflow_id: str) -> str:
    return f"{WF_PREFIX}{workflow_id}"


def node_key(workflow_id: str, index: int) -> str:
    return f"wfn#{workflow_id}#{index}"


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class WorkflowStore(StoreBase):
    """Workflow and node items: creation, reads and the fan-in's conditional writes."""

    # ------------------------------------------------------------- creation
    def create(self, workflow: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> None:
        """Store a new workflow and its nodes (plain items; ids are fresh)."""
        requests = [{"PutRequest": {"Item": dump(n)}} for n in nodes]
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._write(requests[start : start + BATCH_WRITE_LIMIT])
        # The workflow item last: listed only once all its nodes exist. Guards against an
        # id collision overwriting another workflow (ids are random).
        self._db.put_item(
            TableName=self.table,
            Item=dump(workflow),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def _write(self, requests: list[Any]) -> None:
        while requests:
            out = self._db.batch_write_item(RequestItems={self.table: requests})
            requests = list(out.get("UnprocessedItems", {}).get(self.table, []))

    def encode_payload(self, value: Any, tenant: str, task_id: str) -> str | bytes:
        return encode_value(value, self.cipher, field="payload", tenant=tenant, task_id=task_id)

    def decode_payload(self, node: dict[str, Any], task_id: str) -> Any:
        return decode_value(
            node.get("payload"),
            self.cipher,
            field="payload",
            tenant=node["tenant"],
            task_id=task_id,
        )

    # ---------------------------------------------------------------- reads
    def workflow(self, workflow_id: str, tenant: str | None = None) -> dict[str, Any] | None:
        """The workflow item, or None; with `tenant`, another tenant's is None too."""
        out = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": workflow_key(workflow_id)}}, ConsistentRead=True
        )
        item = load(out["Item"]) if "Item" in out else None
        if item is None or "policy" not in item:
            return None
        if tenant is not None and item.get("tenant") != tenant:
            return None
        return item

    def node(self, workflow_id: str, index: int) -> dict[str, Any] | None:
        out = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": node_key(workflow_id, index)}},
            ConsistentRead=True,
        )
        return load(out["Item"]) if "Item" in out else None

    def nodes(self, workflow_id: str, indexes: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Node items by number (consistent reads, 100 a call)."""
        keys = [node_key(workflow_id, i) for i in indexes]
        return {int(item["pk"].rsplit("#", 1)[1]): item for item in self._batch_get(keys)}

    def tasks(self, task_ids: Iterable[str]) -> dict[str, Task]:
        """Task items by id (the missing ones are left out)."""
        found = self._batch_get(list(task_ids))
        return {i["pk"]: item_to_task(i, self.cipher) for i in found if "name" in i}

    def _batch_get(self, keys: list[str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            todo: Any = {
                self.table: {
                    "Keys": [{"pk": {"S": k}} for k in keys[start : start + BATCH_GET_LIMIT]],
                    "ConsistentRead": True,
                }
            }
            while todo:
                out = self._db.batch_get_item(RequestItems=todo)
                items.extend(load(i) for i in out.get("Responses", {}).get(self.table, []))
                todo = out.get("UnprocessedKeys") or None
        return items

    def list_workflows(
        self, tenant: str, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the tenant's workflow items, newest first, and the next token."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "listing",
            "KeyConditionExpression": "listed = :l",
            "ExpressionAttributeValues": vals(l=WF_PREFIX + tenant),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if next_token:
            kwargs["ExclusiveStartKey"] = _start_key(next_token, WF_PREFIX + tenant)
        out = self._db.query(**kwargs)
        keys = [load(k)["pk"] for k in out.get("Items", [])]
        items = {i["pk"]: i for i in self._batch_get(keys)}
        last = out.get("LastEvaluatedKey")
        token = base64.urlsafe_b64encode(json.dumps(load(last)).encode()).decode() if last else None
        return [items[k] for k in keys if k in items], token

    # --------------------------------------------------------- the fan-in
    def arrive(self, workflow_id: str, child: int, parent: int) -> tuple[bool, dict[str, Any]]:
        """Count parent `parent`'s success on node `child`: (counted now, the node).

        The node as it is after the count, or as it was when this parent had already
        been counted (a completion delivered again): either way the caller learns
        `remaining` without a read of its own.
        """
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": node_key(workflow_id, child)}},
                UpdateExpression="SET remaining = remaining - :one ADD done :ps",
                # Exactly once per (parent, child): a completion processed twice (a worker
                # killed after this write, the message delivered again) finds the parent
                # in `done` and decrements nothing. One conditional write on the child
                # alone, no read first: concurrent parents serialize on the item.
                ConditionExpression="attribute_exists(pk) AND NOT contains(done, :p)",
                ExpressionAttributeValues=vals(one=1, p=parent, ps={parent}),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            raw: Any = exc.response.get("Item")
            return False, load(raw) if raw else {}
        return True, load(out["Attributes"])

    def move(self, workflow_id: str, index: int, to: str, allowed: Sequence[str]) -> bool:
        """Set node `index`'s state to `to` if it is one of `allowed`; False if not."""
        froms = {f":a{i}": {"S": s} for i, s in enumerate(allowed)}
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": node_key(workflow_id, index)}},
                UpdateExpression="SET #st = :to",
                # One state change per node: starting (waiting -> started, remaining 0)
                # and cancelling (waiting -> cancelled) race for a waiting node, and
                # only one of them wins; a node that ended never changes again.
                ConditionExpression=f"#st IN ({', '.join(froms)})",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues={":to": {"S": to}, **froms},
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def create_task(self, task: Task) -> bool:
        """Store a node's task; False if it exists already (another start made it)."""
        item = dump(task_to_item(task, self.cipher))
        del item["pk"]
        names = {f"#a{i}": k for i, k in enumerate(item)}
        values = {f":a{i}": v for i, v in enumerate(item.values())}
        sets = ", ".join(f"#a{i} = :a{i}" for i in range(len(item)))
        try:
            # An UpdateItem that creates (workers hold no PutItem: template.yaml).
            # Guards the fixed id: a node started twice (a completion delivered again,
            # a retry after a crash) keeps the task the first start made.
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": task.id}},
                UpdateExpression=f"SET {sets}",
                ConditionExpression="attribute_not_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def sink_ended(self, workflow_id: str, index: int) -> dict[str, Any] | None:
        """Count node `index` (one without dependents) as ended: the workflow item after
        the count, or before it when it was counted already."""
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": workflow_key(workflow_id)}},
                UpdateExpression="SET sinks_left = sinks_left - :one ADD sinks_done :is",
                # Exactly once per node: the hook runs again for a completion delivered
                # twice, and must not count the node twice (the workflow would end early).
                ConditionExpression="attribute_exists(pk) AND NOT contains(sinks_done, :i)",
                ExpressionAttributeValues=vals(one=1, i=index, **{"is": {index}}),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
            raw: Any = exc.response.get("Item")
            return load(raw) if raw else None
        return load(out["Attributes"])

    def flag(self, workflow_id: str, flag: str, *, only_running: bool = False) -> bool:
        """Set the workflow's `failed` or `cancelled` flag; with `only_running`, False
        (and nothing set) once the workflow has ended."""
        condition = "attribute_exists(pk)"
        values: dict[str, Any] = {"t": True}
        if only_running:
            # A cancel must not land on a workflow that has ended meanwhile.
            condition += " AND sinks_left > :zero"
            values["zero"] = 0
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": workflow_key(workflow_id)}},
                UpdateExpression=f"SET {flag} = :t",
                ConditionExpression=condition,
                ExpressionAttributeValues=vals(**values),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def finish(self, workflow_id: str, now_ms: int) -> None:
        """Record when the workflow ended (the first time only)."""
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": workflow_key(workflow_id)}},
                UpdateExpression="SET finished_at = :now",
                # Once: a repeated hook keeps the first end time.
                ConditionExpression="sinks_left <= :zero AND attribute_not_exists(finished_at)",
                ExpressionAttributeValues=vals(now=now_ms, zero=0),
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise


def _start_key(token: str, partition: str) -> dict[str, Any]:
    """The ExclusiveStartKey a `next_token` carries; client input, so checked."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        raise ValueError("next_token is not one this API issued") from None
    if (
        not isinstance(key, dict)
        or set(key) != {"pk", "listed", "created_at"}
        or key.get("listed") != partition
        or not isinstance(key.get("created_at"), int)
        or not str(key.get("pk", "")).startswith(WF_PREFIX)
    ):
        raise ValueError("next_token is not one this API issued")
    return dump(key)


# ------------------------------------------------------------------- answers
def to_workflow(wf: dict[str, Any]) -> Workflow:
    """The workflow a workflow item stores (without its nodes)."""
    return Workflow(
        id=wf["pk"][len(WF_PREFIX) :],
        name=wf.get("label", ""),
        status=workflow_status(
            int(wf["sinks_left"]), bool(wf.get("failed")), bool(wf.get("cancelled"))
        ),
        on_failure=FailurePolicy(wf["policy"]),
        created_at=from_ms(wf["created_at"]),
        finished_at=from_ms(wf.get("finished_at")),
        node_count=int(wf["count"]),
        parent_id=wf.get("parent"),
    )


def node_view(
    wf_id: str, index: int, node: dict[str, Any], parents: list[str], tasks: dict[str, Task]
) -> WorkflowNode:
    """A node as shown: its item's state until its task exists, then its task's."""
    task = tasks.get(node_task_id(wf_id, index))
    view = WorkflowNode(
        name=node["node"],
        task=node["task"],
        task_id=node_task_id(wf_id, index),
        depends_on=parents,
        status=node["state"] if task is None else task.status.value,
    )
    if task is None:
        return view
    last = task.errors[-1].message if task.errors else None
    return view.model_copy(
        update={
            "result": task.result,
            "error": task.error or last,
            "attempts": task.attempts,
            "started_at": task.started_at,
            "finished_at": task.finished_at,
        }
    )
