"""Items of the task table and their encoding: a task item <-> `Task`, listing pages.

A task item holds the task's fields under their own names, times as epoch milliseconds,
`backoff` as JSON text, and payload and result as `crypto.encode_value` stores them
(ciphertext with a cipher, else JSON text). Three attributes serve the indexes and the
claim rather than the task: `listed` (the `listing` GSI's partition: the tenant, only on
a task created alone), `gsi1pk` (the sparse `by-status` GSI: only a failed task has it)
and `claim_after` (the one attribute a claim tests; see `stratoq.adapters.store`).

A listing page (`pk` = "page#<id>") lists up to PAGE_SIZE tasks created together in one
batch: `ids` is their ids as 16 raw bytes each, in the batch's order, and it carries the
`listed` entry its tasks do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from stratoq.adapters.crypto import PayloadCipher, decode_value, encode_value
from stratoq.core.clock import from_ms, to_ms
from stratoq.core.ids import new_task_id
from stratoq.core.models import (
    RUNNABLE_STATUSES,
    AttemptError,
    Backoff,
    Progress,
    Task,
    TaskStatus,
)

_ser = TypeSerializer()
_de = TypeDeserializer()

PAGE_PREFIX = "page#"
PAGE_SIZE = 100  # task ids per listing page: 1.6 KB, 2 write units (+1 index entry)
# A page outlives the tasks it names by this much beyond their retention (counted from
# their latest due time), so retries and slow finishes stay listed; a task that still
# outlives its page can be read by id but is no longer listed.
PAGE_SLACK_MS = 7 * 24 * 3600 * 1000


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def dump(item: dict[str, Any]) -> dict[str, Any]:
    """A plain item in DynamoDB's typed form; None attributes are left out."""
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def load(item: dict[str, Any]) -> dict[str, Any]:
    """A typed DynamoDB item as plain values (numbers as int or float, not Decimal)."""
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def vals(**values: Any) -> dict[str, Any]:
    """ExpressionAttributeValues: each keyword becomes `:name`, typed."""
    return {f":{k}": _ser.serialize(v) for k, v in values.items()}


def gsi_key(tenant: str, status: TaskStatus | str) -> str:
    """The `by-status` index partition of a tenant's tasks in `status`."""
    return f"{tenant}#{status}"


def task_to_item(task: Task, cipher: PayloadCipher | None = None) -> dict[str, Any]:
    """The plain (untyped) item that stores `task`; payload and result encrypted with
    `cipher` when there is one."""

    def stored(value: Any, field: str) -> str | bytes:
        return encode_value(value, cipher, field=field, tenant=task.tenant, task_id=task.id)

    return {
        "pk": task.id,
        "tenant": task.tenant,
        "listed": task.tenant,
        "name": task.name,
        "status": task.status.value,
        "queue": task.queue,
        "priority": task.priority.value,
        "payload": stored(task.payload, "payload"),
        "result": None if task.result is None else stored(task.result, "result"),
        "error": task.error,
        "errors": [
            {"attempt": e.attempt, "kind": e.kind, "message": e.message, "at": to_ms(e.at)}
            for e in task.errors
        ],
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "timeout_seconds": task.timeout_seconds,
        "backoff": task.backoff.model_dump_json(),
        "idempotency_key": task.idempotency_key,
        "lock_key": task.lock_key,
        "concurrency_key": task.concurrency_key,
        "max_concurrency": task.max_concurrency,
        "rate_limit": task.rate_limit,
        "rate_limit_key": task.rate_limit_key,
        "debounce_key": task.debounce_key,
        "debounce_seconds": task.debounce_seconds,
        "waiting_for": task.waiting_for,
        "created_at": to_ms(task.created_at),
        "scheduled_for": to_ms(task.scheduled_for),
        "started_at": to_ms(task.started_at),
        "finished_at": to_ms(task.finished_at),
        "next_attempt_at": to_ms(task.next_attempt_at),
        "gsi1pk": gsi_key(task.tenant, task.status) if task.status is TaskStatus.FAILED else None,
        "claim_after": _claim_after(task),
        "wf": task.workflow_id,
        "wf_node": task.workflow_node,
        "parent": task.parent_id,
        "wf_children": task.workflow_children or None,
        "wf_deps": task.workflow_deps or None,
        "holder": task.holder,
    }


def _claim_after(task: Task) -> int | None:
    if task.status not in RUNNABLE_STATUSES:
        return None
    return to_ms(task.next_attempt_at) or 0


def item_to_task(item: dict[str, Any], cipher: PayloadCipher | None = None) -> Task:
    """The task a plain (loaded) task item stores; decrypts with `cipher`."""
    tenant = item.get("tenant", "default")
    status = TaskStatus(item["status"])

    def value(field: str) -> Any:
        return decode_value(item.get(field), cipher, field=field, tenant=tenant, task_id=item["pk"])

    return Task(
        id=item["pk"],
        tenant=tenant,
        name=item["name"],
        status=status,
        queue=item.get("queue", "default"),
        priority=item.get("priority", "default"),
        payload=value("payload"),
        result=value("result"),
        error=item.get("error"),
        errors=[
            AttemptError(
                attempt=e["attempt"], kind=e["kind"], message=e["message"], at=from_ms(e["at"])
            )
            for e in item.get("errors", [])
        ],
        attempts=item.get("attempts", 0),
        max_attempts=item["max_attempts"],
        timeout_seconds=item["timeout_seconds"],
        backoff=Backoff.model_validate_json(item["backoff"]) if "backoff" in item else Backoff(),
        idempotency_key=item.get("idempotency_key"),
        lock_key=item.get("lock_key"),
        concurrency_key=item.get("concurrency_key"),
        max_concurrency=item.get("max_concurrency"),
        rate_limit=item.get("rate_limit"),
        rate_limit_key=item.get("rate_limit_key"),
        debounce_key=item.get("debounce_key"),
        debounce_seconds=item.get("debounce_seconds"),
        # Only while it may still wait: an older worker's claim did not remove it.
        waiting_for=item.get("waiting_for") if status in RUNNABLE_STATUSES else None,
        created_at=from_ms(item["created_at"]),
        scheduled_for=from_ms(item.get("scheduled_for")),
        started_at=from_ms(item.get("started_at")),
        finished_at=from_ms(item.get("finished_at")),
        next_attempt_at=from_ms(item.get("next_attempt_at")),
        progress=_progress(item.get("progress")),
        cancel_requested_at=from_ms(item.get("cancel_requested_at")),
        workflow_id=item.get("wf"),
        workflow_node=item.get("wf_node"),
        parent_id=item.get("parent"),
        workflow_children=item.get("wf_children", []),
        workflow_deps=item.get("wf_deps", 0),
        holder=item.get("holder"),
    )


def _progress(stored: dict[str, Any] | None) -> Progress | None:
    """The `progress` map a handler's reports write (`adapters.progress`)."""
    if not stored:
        return None
    return Progress(value=stored["value"], message=stored.get("message"), at=from_ms(stored["at"]))


def page_item(tasks: Sequence[Task], retention_ms: int) -> dict[str, Any]:
    """The plain listing page of `tasks` (one tenant's, at most PAGE_SIZE)."""
    created = max(to_ms(t.created_at) or 0 for t in tasks)
    due = max(to_ms(t.scheduled_for) or created for t in tasks)
    tenants = {t.tenant for t in tasks}
    if len(tenants) != 1:
        raise ValueError("one listing page holds the tasks of one tenant")
    return {
        "pk": PAGE_PREFIX + new_task_id(created),
        "listed": tenants.pop(),
        "created_at": created,
        # Ids are hex: stored as bytes, 100 of them fit in 2 write units.
        "ids": b"".join(bytes.fromhex(t.id) for t in tasks),
        "expires_at": (due + retention_ms + PAGE_SLACK_MS) // 1000,
    }


def page_ids(page: dict[str, Any], tenant: str) -> list[str]:
    """A listing page's task ids, newest first (none if it is no page of `tenant`)."""
    if not page["pk"].startswith(PAGE_PREFIX) or page.get("listed") != tenant:
        return []
    raw = bytes(page.get("ids") or b"")
    return [raw[i : i + 16].hex() for i in range(0, len(raw), 16)][::-1]
