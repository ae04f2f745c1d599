"""Reading tasks in bulk: a tenant's tasks page by page, and tasks by id.

GSI `listing` (partition `listed` = tenant, sort `created_at`, keys only) has one entry
per task created alone and one per listing page of a batch; a page is expanded into its
task ids in order. GSI `by-status` lists failed tasks only (sparse). A `next_token` is
the base64 JSON of where the next page starts: for `listing`, the last entry's key and
how many ids of that entry's page were already returned; for `by-status`, the query's
LastEvaluatedKey. Tokens come back from clients, so they are checked before DynamoDB
sees them (UNKNOWN_PAGE otherwise), and hold for the filters they were made with.

What each filter costs (DynamoDB bills what a query reads, not what it returns):

- creation time (`created_after_ms`, `created_before_ms`): a key condition on the sort
  key `created_at` of either index, so a query starts and stops at the range's ends and
  reads nothing outside it: a narrow range over millions of tasks costs its own tasks.
- on failed tasks (`by-status`, projection ALL), `name` and `queue`: a FilterExpression.
  DynamoDB still reads (and bills) every entry of the range; `Limit` counts entries read
  before the filter, so a page can hold few matches, even none, with a `next_token`.
- on the `listing` index, `status`, `name` and `queue`: tested on the task items the page
  reads anyway (BatchGetItem; the index is KEYS_ONLY and a batch's listing page mixes
  names and queues, so there is nothing for a FilterExpression to test). The same cost
  and the same short pages as a FilterExpression. An index per queue would make these
  reads exact, at one more index write per task: the write listing pages exist to avoid.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from stratoq.adapters.store.base import StoreBase
from stratoq.adapters.store.codec import (
    PAGE_PREFIX,
    PAGE_SIZE,
    gsi_key,
    item_to_task,
    load,
    page_ids,
    vals,
)
from stratoq.core.models import Task, TaskStatus

UNKNOWN_PAGE = "next_token is not a token this API returned"


class TaskListing(StoreBase):
    """Listing pages of a tenant's tasks, and batch reads by id."""

    def list_tasks(
        self,
        tenant: str,
        status: TaskStatus | None = None,
        name: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
        created_before_ms: int | None = None,
        *,
        queue: str | None = None,
        created_after_ms: int | None = None,
    ) -> tuple[list[Task], str | None]:
        """A page of the tenant's tasks, newest first, and the token of the next page.

        Failed tasks come from the sparse `by-status` index. Everything else is read
        through `listing`: its entries are tasks created alone and listing pages of
        batches, expanded in order. A page of the answer may hold fewer than `limit`
        tasks (even none) while `next_token` says there is more: with a status, name or
        queue filter, or when listed tasks have expired. `created_after_ms` and
        `created_before_ms` (epoch ms, both exclusive) bound the creation time with a key
        condition: tasks outside the range are not read. A token holds for the filters
        it was made with; ValueError(UNKNOWN_PAGE) for one that cannot be.
        """
        span = _Span(created_after_ms, created_before_ms)
        if span.empty:
            return [], None
        if status is TaskStatus.FAILED:
            return self._list_failed(tenant, name, queue, limit, next_token, span)
        key, skip = _decode_listing_token(next_token, tenant, span)
        ids: list[str] = []
        if skip:
            # Resume inside the listing page `key`; a page gone since (TTL) has no rest.
            found = self._get_many([key["pk"]["S"]]) if key else []
            rest = page_ids(found[0], tenant)[skip:] if found else []
            if len(rest) > limit:
                return self._listed(rest[:limit], tenant, status, name, queue, span), (
                    _encode_listing_token(key, skip + limit)
                )
            ids += rest
        token: str | None = None
        if len(ids) < limit:
            token = self._expand_listing(tenant, key, limit, ids, span)
        elif key is not None:
            token = _encode_listing_token(key, 0)
        return self._listed(ids, tenant, status, name, queue, span), token

    def _expand_listing(
        self,
        tenant: str,
        start: dict[str, Any] | None,
        limit: int,
        ids: list[str],
        span: _Span,
    ) -> str | None:
        """Add the task ids of `listing` entries after `start` to `ids`, up to `limit`;
        returns the token of the rest, if any."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "listing",
            **span.key_condition("listed", tenant),
            "Limit": limit - len(ids),  # every entry lists at least one task
            "ScanIndexForward": False,
        }
        if start is not None:
            kwargs["ExclusiveStartKey"] = start
        out = self._db.query(**kwargs)
        entries: list[dict[str, Any]] = out.get("Items", [])
        pending = [e["pk"]["S"] for e in entries if e["pk"]["S"].startswith(PAGE_PREFIX)]
        pages: dict[str, list[str]] = {}
        for entry in entries:
            pk = entry["pk"]["S"]
            room = limit - len(ids)
            if room == 0:
                return _encode_listing_token(start, 0)
            if not pk.startswith(PAGE_PREFIX):
                ids.append(pk)
                start = _listing_key(entry)
                continue
            if pk not in pages:
                # Read pages as they are needed, a few at a time: ~100 ids each.
                wanted = pending[pending.index(pk) :][: -(-room // PAGE_SIZE) + 1]
                for page in self._get_many(wanted):
                    pages[page["pk"]] = page_ids(page, tenant)
            listed = pages.get(pk, [])
            if len(listed) > room:
                ids += listed[:room]
                return _encode_listing_token(_listing_key(entry), room)
            ids += listed
            start = _listing_key(entry)
        last = out.get("LastEvaluatedKey")
        return _encode_listing_token(last, 0) if last else None

    def _listed(
        self,
        ids: list[str],
        tenant: str,
        status: TaskStatus | None,
        name: str | None,
        queue: str | None,
        span: _Span,
    ) -> list[Task]:
        # The filters of the `listing` index, on the items read anyway (see module doc);
        # the span again too: a batch's tasks are listed at their page's latest time.
        items = [
            i
            for i in self._get_many(ids)
            if i.get("tenant") == tenant and "name" in i and span.contains(i["created_at"])
        ]
        if status is not None:
            items = [i for i in items if i.get("status") == status.value]
        if name:
            items = [i for i in items if i.get("name") == name]
        if queue:
            items = [i for i in items if i.get("queue", "default") == queue]
        return [item_to_task(i, self.cipher) for i in items]

    def _list_failed(
        self,
        tenant: str,
        name: str | None,
        queue: str | None,
        limit: int,
        next_token: str | None,
        span: _Span,
    ) -> tuple[list[Task], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by-status",
            **span.key_condition("gsi1pk", gsi_key(tenant, TaskStatus.FAILED)),
            "Limit": limit,
            "ScanIndexForward": False,
        }
        # Read, billed, then dropped by DynamoDB: the index projects every attribute.
        tests: list[str] = []
        names: dict[str, str] = {}
        if name:
            tests.append("#n = :name")
            names["#n"] = "name"
            kwargs["ExpressionAttributeValues"].update(vals(name=name))
        if queue:
            tests.append("#q = :queue")
            names["#q"] = "queue"
            kwargs["ExpressionAttributeValues"].update(vals(queue=queue))
        if tests:
            kwargs["FilterExpression"] = " AND ".join(tests)
            kwargs["ExpressionAttributeNames"] = names
        if next_token:
            key = _query_key(
                _read_token(next_token), "gsi1pk", kwargs["ExpressionAttributeValues"][":k"]
            )
            kwargs["ExclusiveStartKey"] = span.holds(key)
        out = self._db.query(**kwargs)
        last = out.get("LastEvaluatedKey")
        token = encode_page_token(last) if last else None
        items = [load(i) for i in out.get("Items", [])]
        return [item_to_task(i, self.cipher) for i in items if "name" in i], token

    def get_many(self, ids: Sequence[str]) -> dict[str, Task]:
        """Tasks by id (BatchGetItem, consistent), keyed by id; missing ids are left out.

        No tenant filter: callers that act for a tenant compare `Task.tenant` themselves.
        """
        items = self._get_many(list(dict.fromkeys(ids)))
        return {i["pk"]: item_to_task(i, self.cipher) for i in items if "name" in i}

    def _get_many(self, ids: list[str]) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 100):
            keys: list[Any] = [{"pk": {"S": i}} for i in ids[start : start + 100]]
            while keys:
                out = self._db.batch_get_item(
                    RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
                )
                for raw in out.get("Responses", {}).get(self.table, []):
                    item = load(raw)
                    found[item["pk"]] = item
                unprocessed: Any = out.get("UnprocessedKeys", {}).get(self.table, {})
                keys = list(unprocessed.get("Keys", []))
        return [found[i] for i in ids if i in found]

    def backfill_listing(self) -> int:
        """Give `listed` to tasks stored before the `listing` index existed; returns how
        many were updated (see docs/deploy.md, upgrading). Idempotent."""
        updated = 0
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            # Tasks (they have a name) that neither carry `listed` nor are on a page.
            "FilterExpression": "attribute_exists(#n) AND attribute_not_exists(listed) "
            "AND attribute_not_exists(page)",
            "ProjectionExpression": "pk, tenant",
            "ExpressionAttributeNames": {"#n": "name"},
        }
        while True:
            out = self._db.scan(**kwargs)
            for item in out.get("Items", []):
                try:
                    self._db.update_item(
                        TableName=self.table,
                        Key={"pk": item["pk"]},
                        UpdateExpression="SET listed = tenant",
                        # Not a task TTL removed meanwhile (the update would re-create it).
                        ConditionExpression="attribute_exists(pk) AND attribute_not_exists(page)",
                    )
                    updated += 1
                except ClientError as exc:
                    if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
            if "LastEvaluatedKey" not in out:
                return updated
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]


class _Span:
    """A range of creation times (epoch ms, both ends exclusive; None: open)."""

    def __init__(self, after_ms: int | None, before_ms: int | None) -> None:
        self.after, self.before = after_ms, before_ms

    @property
    def empty(self) -> bool:
        return self.after is not None and self.before is not None and self.before - self.after < 2

    def contains(self, at_ms: int) -> bool:
        return (self.after is None or at_ms > self.after) and (
            self.before is None or at_ms < self.before
        )

    def key_condition(self, partition: str, value: str) -> dict[str, Any]:
        """A query's key condition: the index partition, and the range on the sort key
        `created_at` (entries outside it are not read, nor billed)."""
        condition, values = f"{partition} = :k", vals(k=value)
        if self.after is not None and self.before is not None:
            # BETWEEN is inclusive; the span is not (and never empty here).
            condition += " AND created_at BETWEEN :lo AND :hi"
            values.update(vals(lo=self.after + 1, hi=self.before - 1))
        elif self.after is not None:
            condition += " AND created_at > :lo"
            values.update(vals(lo=self.after))
        elif self.before is not None:
            condition += " AND created_at < :hi"
            values.update(vals(hi=self.before))
        return {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}

    def holds(self, key: dict[str, Any]) -> dict[str, Any]:
        """`key` if its `created_at` is in the span: DynamoDB refuses a start key outside
        the key condition, and a page token only ever holds a key of its own query."""
        if not self.contains(int(key["created_at"]["N"])):
            raise ValueError(UNKNOWN_PAGE)
        return key


# ------------------------------------------------------------------- tokens
def encode_page_token(key: dict[str, Any]) -> str:
    """The `next_token` that carries `key` (base64 JSON)."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _read_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        raise ValueError(UNKNOWN_PAGE) from None


def _query_key(key: Any, partition: str, value: dict[str, str]) -> dict[str, Any]:
    """`key` if it is a key of this very query: the index's partition `value` (the
    caller's own), its base-table key and `created_at`, typed as the index has them.
    A token is client input: anything else is refused before DynamoDB sees it."""
    if (
        not isinstance(key, dict)
        or set(key) != {"pk", partition, "created_at"}
        or not all(_key_value(v) for v in key.values())
        or key[partition] != value
        or "S" not in key["pk"]
        or "N" not in key["created_at"]
    ):
        raise ValueError(UNKNOWN_PAGE)
    return key


def _listing_key(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("pk", "listed", "created_at")}


def _encode_listing_token(key: dict[str, Any] | None, skip: int) -> str:
    return encode_page_token({"k": None if key is None else _listing_key(key), "s": skip})


def _decode_listing_token(
    token: str | None, tenant: str, span: _Span
) -> tuple[dict[str, Any] | None, int]:
    """(ExclusiveStartKey, ids to skip in the next entry); client input, so checked."""
    if not token:
        return None, 0
    raw = _read_token(token)
    try:
        key, skip = raw["k"], raw["s"]
    except (TypeError, KeyError):
        raise ValueError(UNKNOWN_PAGE) from None
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip <= PAGE_SIZE:
        raise ValueError(UNKNOWN_PAGE)
    if key is None:
        if skip:
            raise ValueError(UNKNOWN_PAGE)
        return None, 0
    key = span.holds(_query_key(key, "listed", {"S": tenant}))
    if skip and not key["pk"]["S"].startswith(PAGE_PREFIX):
        raise ValueError(UNKNOWN_PAGE)  # only a listing page is resumed inside
    return key, skip


def _key_value(value: Any) -> bool:
    """Is `value` a DynamoDB key attribute value: {"S": text} or {"N": number text}?"""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (kind, text), *_ = value.items()
    if kind == "S":
        return isinstance(text, str) and 0 < len(text) <= 1024
    return (
        kind == "N"
        and isinstance(text, str)
        and text.isascii()
        and text.isdigit()
        and len(text) <= 20
    )
