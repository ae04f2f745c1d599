"""DynamoDB task repository.

One table, partition key `pk`. Item kinds:
- a task: `pk` = task id;
- an idempotency record: `pk` = "idem#<tenant>#<key>", pointing at the task it created.
- a lock: `pk` = "lock#<tenant>#<name>" (`adapters.locks`: fencing counter, holder, hold end).
- a listing page: `pk` = "page#<id>", the ids of tasks created together in one batch.
  (Unique keys of later features live beside them under their own prefixes.)

GSI `listing` (`listed` = tenant, `created_at`, keys only) lists a tenant's tasks, newest
first. A task created alone carries `listed` itself; tasks created in a batch do not: the
batch's page does, so one index entry (and one item of 1.6 KB per 100 ids) lists
them all, which saves a write unit per batched task (4 -> 3.03 per task, claim and
completion included). An index entry is written once, at creation. GSI `by-status`
(`gsi1pk` = "<tenant>#failed", `created_at`) is sparse: only failed tasks carry its key,
so dead tasks are found at once while the hot path (claim, complete) writes no index.
Other statuses are listed through `listing` and filtered.

`claim_after` (epoch ms) is the one attribute a claim tests: for a runnable task it is
when the task is due, for a running one when its lease ends (plus a second), and it is
absent once the task is final. One comparison keeps the claim cheap to evaluate.

Every state change after creation is a conditional UpdateItem; the condition says which
race it guards against. Times are epoch milliseconds. Payload and result are ciphertext
(binary, `stratoq.adapters.crypto`: KMS envelope encryption bound to tenant and task id) when the
store has a cipher, else JSON text.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from stratoq.adapters.crypto import PayloadCipher, decode_value, encode_value
from stratoq.core.errors import InvalidStateError, TaskNotFoundError
from stratoq.core.models import (
    FINAL_STATUSES,
    RUNNABLE_STATUSES,
    AttemptError,
    Backoff,
    Task,
    TaskStatus,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_ser = TypeSerializer()
_de = TypeDeserializer()

IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000
MAX_ERROR_CHARS = 2000
BATCH_WRITE_LIMIT = 25  # DynamoDB's own limit (moto accepts more; AWS refuses)
PAGE_PREFIX = "page#"
UNKNOWN_PAGE = "next_token is not a token this API returned"
PAGE_SIZE = 100  # task ids per listing page: 1.6 KB, 2 write units (+1 index entry)
# A page outlives the tasks it names by this much beyond their retention (counted from
# their latest due time), so retries and slow finishes stay listed; a task that still
# outlives its page can be read by id but is no longer listed.
PAGE_SLACK_MS = 7 * 24 * 3600 * 1000
# A due task may be claimed up to EARLY_MS early (SQS delays have whole-second
# resolution), so a lease is stored as ending LEASE_SLACK_MS later: the same early-claim
# allowance then never cuts into a live lease (it is taken over only once it has ended).
EARLY_MS = 1000
LEASE_SLACK_MS = EARLY_MS + 1


def new_task_id(now_ms: int | None = None) -> str:
    """32 hex chars, time-ordered: 48 bits of milliseconds, then 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{ms:012x}{os.urandom(10).hex()}"


def new_token() -> str:
    return uuid.uuid4().hex


def to_ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dump(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _load(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_de.deserialize(v)) for k, v in item.items()}


def _vals(**values: Any) -> dict[str, Any]:
    return {f":{k}": _ser.serialize(v) for k, v in values.items()}


def _gsi_key(tenant: str, status: TaskStatus | str) -> str:
    return f"{tenant}#{status}"


def task_to_item(task: Task, cipher: PayloadCipher | None = None) -> dict[str, Any]:
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
        "created_at": to_ms(task.created_at),
        "scheduled_for": to_ms(task.scheduled_for),
        "started_at": to_ms(task.started_at),
        "finished_at": to_ms(task.finished_at),
        "next_attempt_at": to_ms(task.next_attempt_at),
        "gsi1pk": _gsi_key(task.tenant, task.status) if task.status is TaskStatus.FAILED else None,
        "claim_after": _claim_after(task),
    }


def _claim_after(task: Task) -> int | None:
    if task.status not in RUNNABLE_STATUSES:
        return None
    return to_ms(task.next_attempt_at) or 0


def item_to_task(item: dict[str, Any], cipher: PayloadCipher | None = None) -> Task:
    tenant = item.get("tenant", "default")

    def value(field: str) -> Any:
        return decode_value(item.get(field), cipher, field=field, tenant=tenant, task_id=item["pk"])

    return Task(
        id=item["pk"],
        tenant=tenant,
        name=item["name"],
        status=TaskStatus(item["status"]),
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
        created_at=from_ms(item["created_at"]),
        scheduled_for=from_ms(item.get("scheduled_for")),
        started_at=from_ms(item.get("started_at")),
        finished_at=from_ms(item.get("finished_at")),
        next_attempt_at=from_ms(item.get("next_attempt_at")),
    )


@dataclass(frozen=True)
class Claimed:
    """The caller now holds the task's lease, fenced by `token`."""

    task: Task
    token: str
    lease_expires_ms: int
    # The previous holder's lease expired mid-attempt: that attempt was lost.
    took_over: bool
    # What the claim overwrote, so that `unclaim` can put it back.
    previous_status: TaskStatus = TaskStatus.QUEUED
    previous_started_ms: int | None = None


@dataclass(frozen=True)
class NotClaimed:
    """Why a claim was refused; `task` is the state that refused it (None: no such task)."""

    reason: str  # missing | final | busy | not_due | tenant
    task: Task | None
    lease_expires_ms: int | None = None


ClaimResult = Claimed | NotClaimed


def _error_entry(attempt: int, kind: str, message: str, now_ms: int) -> dict[str, Any]:
    return {"attempt": attempt, "kind": kind, "message": message[:MAX_ERROR_CHARS], "at": now_ms}


class TaskStore:
    """Reads and conditional writes of task state in one DynamoDB table."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        retention_days: int = 30,
        idempotency_window_ms: int = IDEMPOTENCY_WINDOW_MS,
        cipher: PayloadCipher | None = None,
    ) -> None:
        self._db = client
        self.table = table
        # Encrypts payloads and results (None: stored in clear; see crypto.cipher_for).
        self.cipher = cipher
        self._retention_ms = retention_days * 24 * 3600 * 1000
        self._idem_window_ms = idempotency_window_ms

    @property
    def client(self) -> DynamoDBClient:
        """The DynamoDB client; other repositories of this table (locks) share it."""
        return self._db

    # ----------------------------------------------------------------- creation
    def create(self, task: Task, now_ms: int, window_ms: int | None = None) -> tuple[Task, bool]:
        """Store a new task. Returns (task, created).

        With an idempotency key, a key already used by this tenant within the window
        (`window_ms`, default the store's) returns the existing task and `created=False`,
        whatever that task's status (a finished task still holds its key); nothing new is
        stored. A record past its window counts as free even before TTL removes it.
        """
        item = _dump(task_to_item(task, self.cipher))
        if task.idempotency_key is None:
            # Guards against a task id collision overwriting another task (ids are random).
            self._db.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
            return task, True
        idem_pk = f"idem#{task.tenant}#{task.idempotency_key}"
        expires_ms = now_ms + (self._idem_window_ms if window_ms is None else window_ms)
        if self._take_key(task, item, idem_pk, expires_ms, now_ms):
            return task, True
        record = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": idem_pk}}, ConsistentRead=True
        ).get("Item")
        existing = self.get(_load(record)["task_id"], task.tenant) if record else None
        if existing is not None:
            return existing, False
        if record is not None and self._take_key(
            task, item, idem_pk, expires_ms, now_ms, stale_task=_load(record)["task_id"]
        ):
            # The record outlived its task (the task's retention is shorter than the key's
            # window, so TTL removed it): nothing is left to return, so the key is free.
            return task, True
        # Lost a race for the key to a request whose record we could not read back.
        raise InvalidStateError(
            f"idempotency key {task.idempotency_key!r} is in use; try again shortly"
        )

    def _take_key(
        self,
        task: Task,
        item: dict[str, Any],
        idem_pk: str,
        expires_ms: int,
        now_ms: int,
        stale_task: str | None = None,
    ) -> bool:
        """Write the idempotency record and the task in one transaction; False if taken."""
        # Guards the key: taken only if never used or its window ended (or, on the second
        # try, the record still names the vanished task it named when we read it).
        condition = "attribute_not_exists(pk) OR window_ends < :now"
        values: dict[str, Any] = {"now": now_ms}
        if stale_task is not None:
            condition += " OR task_id = :stale"
            values["stale"] = stale_task
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": _dump(
                                {
                                    "pk": idem_pk,
                                    "task_id": task.id,
                                    "window_ends": expires_ms,
                                    # TTL removes it some time after the window; the
                                    # condition does not wait for that.
                                    "expires_at": expires_ms // 1000 + 3600,
                                }
                            ),
                            "ConditionExpression": condition,
                            "ExpressionAttributeValues": _vals(**values),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons", [])
            if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
        return False

    def create_many(self, tasks: Sequence[Task]) -> None:
        """Store tasks without idempotency keys in BatchWriteItem calls of 25.

        Unconditional, which is safe because ids are fresh random values. Two or more
        tasks are listed through pages of up to PAGE_SIZE ids instead of an index entry
        each. A page goes in the same calls as its tasks (first); if a write fails for
        good this raises and nothing is sent, so an id whose task is missing is skipped
        by listing, and a stored task whose page is missing is readable by id only.
        """
        if len(tasks) < 2:
            for t in tasks:
                self._batch_write([{"PutRequest": {"Item": _dump(task_to_item(t, self.cipher))}}])
            return
        requests: list[Any] = []
        for start in range(0, len(tasks), PAGE_SIZE):
            chunk = tasks[start : start + PAGE_SIZE]
            page = self._page_item(chunk)
            requests.append({"PutRequest": {"Item": _dump(page)}})
            for t in chunk:
                item = task_to_item(t, self.cipher)
                # Listed by its page, which it names (backfill_listing leaves it alone).
                del item["listed"]
                item["page"] = page["pk"]
                requests.append({"PutRequest": {"Item": _dump(item)}})
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._batch_write(requests[start : start + BATCH_WRITE_LIMIT])

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

    def _page_item(self, tasks: Sequence[Task]) -> dict[str, Any]:
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
            "expires_at": (due + self._retention_ms + PAGE_SLACK_MS) // 1000,
        }

    def _batch_write(self, requests: list[Any]) -> None:
        delay = 0.05
        while requests:
            out = self._db.batch_write_item(RequestItems={self.table: requests})
            requests = list(out.get("UnprocessedItems", {}).get(self.table, []))
            if requests:
                time.sleep(delay)  # throttled: back off before resubmitting the rest
                delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ reading
    def get(self, task_id: str, tenant: str | None = None) -> Task | None:
        """The task, or None. With `tenant`, another tenant's task is None too."""
        out = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": task_id}}, ConsistentRead=True
        )
        if "Item" not in out:
            return None
        item = _load(out["Item"])
        if "name" not in item or (tenant is not None and item.get("tenant") != tenant):
            return None
        return item_to_task(item, self.cipher)

    def list_tasks(
        self,
        tenant: str,
        status: TaskStatus | None = None,
        name: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """A page of the tenant's tasks, newest first, and the token of the next page.

        Failed tasks come from the sparse `by-status` index. Everything else is read
        through `listing`: its entries are tasks created alone and listing pages of
        batches, expanded in order. A page of the answer may hold fewer than `limit`
        tasks (even none) while `next_token` says there is more: with a status or name
        filter, or when listed tasks have expired.
        """
        if status is TaskStatus.FAILED:
            return self._list_failed(tenant, name, limit, next_token)
        key, skip = _decode_listing_token(next_token, tenant)
        ids: list[str] = []
        if skip:
            # Resume inside the listing page `key`; a page gone since (TTL) has no rest.
            found = self._get_many([key["pk"]["S"]]) if key else []
            rest = _page_ids(found[0], tenant)[skip:] if found else []
            if len(rest) > limit:
                return self._listed(rest[:limit], tenant, status, name), (
                    _encode_listing_token(key, skip + limit)
                )
            ids += rest
        token: str | None = None
        if len(ids) < limit:
            token = self._expand_listing(tenant, key, limit, ids)
        elif key is not None:
            token = _encode_listing_token(key, 0)
        return self._listed(ids, tenant, status, name), token

    def _expand_listing(
        self, tenant: str, start: dict[str, Any] | None, limit: int, ids: list[str]
    ) -> str | None:
        """Add the task ids of `listing` entries after `start` to `ids`, up to `limit`;
        returns the token of the rest, if any."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "listing",
            "KeyConditionExpression": "listed = :k",
            "ExpressionAttributeValues": _vals(k=tenant),
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
                    pages[page["pk"]] = _page_ids(page, tenant)
            listed = pages.get(pk, [])
            if len(listed) > room:
                ids += listed[:room]
                return _encode_listing_token(_listing_key(entry), room)
            ids += listed
            start = _listing_key(entry)
        last = out.get("LastEvaluatedKey")
        return _encode_listing_token(last, 0) if last else None

    def _listed(
        self, ids: list[str], tenant: str, status: TaskStatus | None, name: str | None
    ) -> list[Task]:
        items = [i for i in self._get_many(ids) if i.get("tenant") == tenant and "name" in i]
        if status is not None:
            items = [i for i in items if i.get("status") == status.value]
        if name:
            items = [i for i in items if i.get("name") == name]
        return [item_to_task(i, self.cipher) for i in items]

    def _list_failed(
        self, tenant: str, name: str | None, limit: int, next_token: str | None
    ) -> tuple[list[Task], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "by-status",
            "KeyConditionExpression": "gsi1pk = :k",
            "ExpressionAttributeValues": _vals(k=_gsi_key(tenant, TaskStatus.FAILED)),
            "Limit": limit,
            "ScanIndexForward": False,
        }
        if name:
            kwargs["FilterExpression"] = "#n = :name"
            kwargs["ExpressionAttributeNames"] = {"#n": "name"}
            kwargs["ExpressionAttributeValues"].update(_vals(name=name))
        if next_token:
            kwargs["ExclusiveStartKey"] = _query_key(
                _read_token(next_token), "gsi1pk", kwargs["ExpressionAttributeValues"][":k"]
            )
        out = self._db.query(**kwargs)
        last = out.get("LastEvaluatedKey")
        token = encode_page_token(last) if last else None
        items = [_load(i) for i in out.get("Items", [])]
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
                    item = _load(raw)
                    found[item["pk"]] = item
                unprocessed: Any = out.get("UnprocessedKeys", {}).get(self.table, {})
                keys = list(unprocessed.get("Keys", []))
        return [found[i] for i in ids if i in found]

    # ------------------------------------------------------------ worker writes
    def claim(self, task_id: str, tenant: str, now_ms: int, lease_ms: int) -> ClaimResult:
        """Take the lease on a task so that only the caller runs this attempt."""
        token = new_token()
        expires = now_ms + lease_ms
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": task_id}},
                UpdateExpression=(
                    "SET #s = :running, claim_after = :cl, lease_token = :tok, "
                    "started_at = :now, attempts = attempts + :one"
                ),
                # Guards against running a task twice: only a task that is due (runnable
                # and past its delay, up to a second early for SQS's whole-second
                # delays) or whose holder's lease has ended (the holder died) is
                # claimable; a concurrent duplicate delivery loses here; a final task has
                # no claim_after at all. The tenant check catches a message that does not
                # belong to the task.
                ConditionExpression="claim_after <= :due AND tenant = :tenant",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_vals(
                    running="running",
                    cl=expires + LEASE_SLACK_MS,
                    tok=token,
                    now=now_ms,
                    due=now_ms + EARLY_MS,
                    one=1,
                    tenant=tenant,
                ),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raw: Any = exc.response.get("Item")
            return self._refusal(_load(raw) if raw else None, tenant)
        old = _load(out["Attributes"])
        old_task = item_to_task(old, self.cipher)
        took_over = old_task.status is TaskStatus.RUNNING
        task = old_task.model_copy(
            update={
                "status": TaskStatus.RUNNING,
                "attempts": old_task.attempts + 1,
                "started_at": from_ms(now_ms),
            }
        )
        return Claimed(
            task=task,
            token=token,
            lease_expires_ms=expires,
            took_over=took_over,
            previous_status=old_task.status,
            previous_started_ms=old.get("started_at"),
        )

    def _refusal(self, item: dict[str, Any] | None, tenant: str) -> NotClaimed:
        if item is None or "name" not in item:
            return NotClaimed("missing", None)
        if item.get("tenant") != tenant:
            return NotClaimed("tenant", None)  # never hand out another tenant's task
        task = item_to_task(item, self.cipher)
        if task.status in FINAL_STATUSES:
            return NotClaimed("final", task)
        if task.status is TaskStatus.RUNNING:
            return NotClaimed("busy", task, int(item["claim_after"]) - LEASE_SLACK_MS)
        return NotClaimed("not_due", task)

    def extend_lease(self, task_id: str, token: str, until_ms: int) -> bool:
        """Push the lease end out; False means the lease is no longer ours."""
        return self._fenced_update(
            task_id,
            token,
            "SET claim_after = :cl",
            {"cl": until_ms + LEASE_SLACK_MS},
            running_only=True,
        )

    def complete(self, task_id: str, tenant: str, token: str, result: Any, now_ms: int) -> bool:
        return self._fenced_update(
            task_id,
            token,
            "SET #s = :st, #r = :res, finished_at = :now, expires_at = :ttl "
            "REMOVE claim_after, lease_token",
            {
                "st": "succeeded",
                "res": encode_value(
                    result, self.cipher, field="result", tenant=tenant, task_id=task_id
                ),
                "now": now_ms,
                "ttl": (now_ms + self._retention_ms) // 1000,
            },
            {"#r": "result"},
        )

    def schedule_retry(
        self,
        task_id: str,
        tenant: str,
        token: str,
        attempt: int,
        kind: str,
        message: str,
        next_attempt_ms: int,
        now_ms: int,
    ) -> bool:
        return self._fenced_update(
            task_id,
            token,
            "SET #s = :st, next_attempt_at = :next, claim_after = :next, #e = :msg, "
            "errors = list_append(if_not_exists(errors, :empty), :err) REMOVE lease_token",
            {
                "st": "retrying",
                "next": next_attempt_ms,
                "msg": message[:MAX_ERROR_CHARS],
                "empty": [],
                "err": [_error_entry(attempt, kind, message, now_ms)],
            },
            {"#e": "error"},
        )

    def fail(
        self,
        task_id: str,
        tenant: str,
        token: str,
        attempt: int,
        kind: str,
        message: str,
        now_ms: int,
    ) -> bool:
        return self._fenced_update(
            task_id,
            token,
            "SET #s = :st, gsi1pk = :gsi, #e = :msg, finished_at = :now, expires_at = :ttl, "
            "attempts = :att, errors = list_append(if_not_exists(errors, :empty), :err) "
            "REMOVE claim_after, next_attempt_at, lease_token",
            {
                "st": "failed",
                "gsi": _gsi_key(tenant, TaskStatus.FAILED),
                "msg": message[:MAX_ERROR_CHARS],
                "now": now_ms,
                "att": attempt,
                "ttl": (now_ms + self._retention_ms) // 1000,
                "empty": [],
                "err": [_error_entry(attempt, kind, message, now_ms)],
            },
            {"#e": "error"},
        )

    def release(self, task_id: str, tenant: str, token: str) -> bool:
        """Give a claimed task back unrun (graceful shutdown): the attempt does not count."""
        return self._fenced_update(
            task_id,
            token,
            "SET #s = :st, attempts = attempts - :one, claim_after = :zero REMOVE lease_token",
            {"st": "queued", "one": 1, "zero": 0},
            running_only=True,
        )

    def unclaim(self, claimed: Claimed) -> bool:
        """Undo a claim whose task did not run (its lock is held): no attempt is counted.

        Status, attempts and started_at return to what the claim found; errors are left
        as they are. A task taken over from a lost attempt returns as `queued` (that
        attempt is already recorded as lost). False: the lease is no longer ours.
        """
        previous = claimed.previous_status
        status = previous if previous in RUNNABLE_STATUSES else TaskStatus.QUEUED
        values: dict[str, Any] = {"st": status.value, "one": 1, "zero": 0}
        expression = "SET #s = :st, attempts = attempts - :one, claim_after = :zero"
        if claimed.previous_started_ms is None:
            expression += " REMOVE lease_token, started_at"
        else:
            expression += ", started_at = :sa REMOVE lease_token"
            values["sa"] = claimed.previous_started_ms
        # claim_after 0: runnable at once; the re-delayed message paces the next claim.
        return self._fenced_update(
            claimed.task.id, claimed.token, expression, values, running_only=True
        )

    def record_lost_attempt(
        self, task_id: str, token: str, attempt: int, message: str, now_ms: int
    ) -> bool:
        """Note in the history that attempt `attempt` was lost (its worker died)."""
        return self._fenced_update(
            task_id,
            token,
            "SET errors = list_append(if_not_exists(errors, :empty), :err)",
            {"empty": [], "err": [_error_entry(attempt, "lost", message, now_ms)]},
        )

    def _fenced_update(
        self,
        task_id: str,
        token: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        running_only: bool = False,
    ) -> bool:
        names = {"#s": "status", **(names or {})}
        condition = "lease_token = :tok"
        if running_only:
            # The attempt is over once recorded (the token stays on the item for the
            # record): a late heartbeat or release must not revive a finished task.
            condition += " AND #s = :fenced_running"
            values = {**values, "fenced_running": "running"}
        used = {n: v for n, v in names.items() if n in expression or n in condition}
        kwargs: dict[str, Any] = {}
        if used:
            kwargs["ExpressionAttributeNames"] = used
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": task_id}},
                UpdateExpression=expression,
                # Fencing: only the current lease holder may record an outcome or extend
                # the lease. A worker whose lease expired and was taken over (it was
                # paused, partitioned or slow) must not overwrite the newer attempt.
                ConditionExpression=condition,
                ExpressionAttributeValues=_vals(tok=token, **values),
                **kwargs,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # ------------------------------------------------------------ user actions
    def cancel(self, task_id: str, tenant: str, now_ms: int) -> Task:
        """Cancel a task that has not started; raises if it is running or finished."""
        return self._transition(
            task_id,
            tenant,
            # Guards against cancelling a task a worker already claimed or finished.
            allowed=RUNNABLE_STATUSES,
            expression=(
                "SET #s = :st, finished_at = :now, expires_at = :ttl "
                "REMOVE next_attempt_at, claim_after"
            ),
            values={
                "st": "cancelled",
                "now": now_ms,
                "ttl": (now_ms + self._retention_ms) // 1000,
            },
            verb="cancel",
        )

    def requeue(self, task_id: str, tenant: str, now_ms: int) -> Task:
        """Make a failed (or cancelled) task runnable again with its attempts reset.

        A task that is `queued` and has never started is returned as it is: the caller
        re-sends its message. That is how a task recovers whose message never reached
        SQS (a requeue or enqueue whose send failed); a second message for a task that
        does have one is harmless (claims deduplicate deliveries).
        """
        try:
            return self._requeue(task_id, tenant)
        except InvalidStateError:
            task = self.get(task_id, tenant)
            if task is not None and task.status is TaskStatus.QUEUED and task.attempts == 0:
                return task
            raise

    def _requeue(self, task_id: str, tenant: str) -> Task:
        return self._transition(
            task_id,
            tenant,
            # Guards against resetting a task that is still alive or already succeeded.
            allowed=frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED}),
            expression=(
                "SET #s = :st, attempts = :zero, claim_after = :zero "
                "REMOVE finished_at, expires_at, next_attempt_at, #e, gsi1pk"
            ),
            values={"st": "queued", "zero": 0},
            verb="retry",
            names={"#e": "error"},
        )

    def _transition(
        self,
        task_id: str,
        tenant: str,
        allowed: Iterable[TaskStatus],
        expression: str,
        values: dict[str, Any],
        verb: str,
        names: dict[str, str] | None = None,
    ) -> Task:
        allowed = sorted(allowed)
        placeholders = {f"a{i}": s.value for i, s in enumerate(allowed)}
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": task_id}},
                UpdateExpression=expression,
                ConditionExpression=(
                    f"tenant = :tenant AND #s IN ({', '.join(':' + k for k in placeholders)})"
                ),
                ExpressionAttributeNames={"#s": "status", **(names or {})},
                ExpressionAttributeValues=_vals(tenant=tenant, **placeholders, **values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raw: Any = exc.response.get("Item")
            item = _load(raw) if raw else None
            if item is None or "name" not in item or item.get("tenant") != tenant:
                raise TaskNotFoundError(f"no task {task_id}") from None
            raise InvalidStateError(
                f"cannot {verb} task {task_id}: it is {item['status']}"
            ) from None
        return item_to_task(_load(out["Attributes"]), self.cipher)


def encode_page_token(key: dict[str, Any]) -> str:
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


def _page_ids(page: dict[str, Any], tenant: str) -> list[str]:
    """A listing page's task ids, newest first (none if it is no page of `tenant`)."""
    if not page["pk"].startswith(PAGE_PREFIX) or page.get("listed") != tenant:
        return []
    raw = bytes(page.get("ids") or b"")
    return [raw[i : i + 16].hex() for i in range(0, len(raw), 16)][::-1]


def _listing_key(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("pk", "listed", "created_at")}


def _encode_listing_token(key: dict[str, Any] | None, skip: int) -> str:
    return encode_page_token({"k": None if key is None else _listing_key(key), "s": skip})


def _decode_listing_token(token: str | None, tenant: str) -> tuple[dict[str, Any] | None, int]:
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
    key = _query_key(key, "listed", {"S": tenant})
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
