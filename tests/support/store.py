"""TaskStore test helpers: tasks built and stored at a fixed time, raw items, claims.

Time is explicit: every call gets its `now_ms`, so leases expire and retries fall due by
passing a later value, never by waiting.
"""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from stratoq.adapters.store import Claimed
from stratoq.core.models import Task, TaskRequest
from stratoq.services.enqueue import Enqueuer

NOW = 1_800_000_000_000  # 2027-01-15: fixed, and in the future so no TTL can remove items
LEASE = 30_000
DAY_MS = 24 * 3600 * 1000
OTHER = "other-tenant"

_de = TypeDeserializer()


def build(core: Enqueuer, tenant: str = "default", **request: Any) -> Task:
    request.setdefault("name", "echo")
    return core.build(TaskRequest(**request), tenant)


def stored(core: Enqueuer, tenant: str = "default", **request: Any) -> Task:
    task, created = core.store.create(build(core, tenant, **request), NOW)
    assert created
    return task


def fetch(core: Enqueuer, task_id: str) -> Task:
    task = core.store.get(task_id)
    assert task is not None, task_id
    return task


def raw(core: Enqueuer, key: str) -> dict[str, Any] | None:
    """The item as DynamoDB holds it (lease fields included)."""
    out = core.store.client.get_item(
        TableName=core.store.table, Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return {k: _de.deserialize(v) for k, v in out["Item"].items()} if "Item" in out else None


def claimed(core: Enqueuer, task_id: str, now_ms: int = NOW, lease_ms: int = LEASE) -> Claimed:
    result = core.store.claim(task_id, "default", now_ms, lease_ms)
    assert isinstance(result, Claimed), result
    return result


def item_count(core: Enqueuer) -> int:
    return core.store.client.scan(TableName=core.store.table, Select="COUNT")["Count"]
