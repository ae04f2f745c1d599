"""Creating tasks: one at a time (optionally under an idempotency key) or in batches.

An idempotency record (`pk` = "idem#<tenant>#<key>") names the task it created
(`task_id`) and holds the key until `window_ends` (epoch ms); TTL (`expires_at`, an hour
past the window) removes it later, but a record past its window already counts as free.
It is written in one transaction with its task, so neither exists without the other at
creation. Tasks created in a batch go with listing pages (`codec.page_item`) instead of
index entries of their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from stratoq.adapters.store.base import StoreBase
from stratoq.adapters.store.codec import PAGE_SIZE, dump, load, page_item, task_to_item, vals
from stratoq.core.errors import InvalidStateError
from stratoq.core.models import Task

BATCH_WRITE_LIMIT = 25  # DynamoDB's own limit (moto accepts more; AWS refuses)


class TaskRecords(StoreBase):
    """Task creation and idempotency records."""

    def create(self, task: Task, now_ms: int, window_ms: int | None = None) -> tuple[Task, bool]:
        """Store a new task. Returns (task, created).

        With an idempotency key, a key already used by this tenant within the window
        (`window_ms`, default the store's) returns the existing task and `created=False`,
        whatever that task's status (a finished task still holds its key); nothing new is
        stored. A record past its window counts as free even before TTL removes it.
        """
        item = dump(task_to_item(task, self.cipher))
        if task.idempotency_key is None:
            try:
                # Guards against a task id collision overwriting another task (ids are
                # random).
                self._db.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                if exc.response.get("Item") != item:
                    raise
                # Our own put, applied by a try whose answer was lost (botocore retried
                # it and the retry met the item it had written): created, not a clash.
            return task, True
        idem_pk = f"idem#{task.tenant}#{task.idempotency_key}"
        expires_ms = now_ms + (self._idem_window_ms if window_ms is None else window_ms)
        if self._take_key(task, item, idem_pk, expires_ms, now_ms):
            return task, True
        record = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": idem_pk}}, ConsistentRead=True
        ).get("Item")
        existing = self.get(load(record)["task_id"], task.tenant) if record else None
        if existing is not None:
            # The record naming this very task: our own transaction, applied by a try
            # whose answer was lost (botocore retried it, and the retry met the key it had
            # just taken). Task ids are fresh random values, so no one else wrote it.
            return existing, existing.id == task.id
        if record is not None and self._take_key(
            task, item, idem_pk, expires_ms, now_ms, stale_task=load(record)["task_id"]
        ):
            # The record outlived its task (the task's retention is shorter than the key's
            # window, so TTL removed it): nothing is left to return, so the key is free.
            return task, True
        # Lost a race for the key to a request whose record we could not read back.
        raise InvalidStateError(
            f"idempotency key {task.idempotency_key!r} is in use; try again shortly"
        )

    def holder(self, tenant: str, key: str, now_ms: int) -> Task | None:
        """The task an idempotency key names while its window is open, if that task
        still exists (one consistent read, two when it names one). Enqueue asks before
        sending a keyed task's message, so a repeat sends no message for a task that will
        never be stored; `create` still decides a race between two first requests."""
        record = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": f"idem#{tenant}#{key}"}}, ConsistentRead=True
        ).get("Item")
        if record is None:
            return None
        data = load(record)
        if int(data.get("window_ends", 0)) < now_ms:
            return None
        return self.get(data["task_id"], tenant)

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
                            "Item": dump(
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
                            "ExpressionAttributeValues": vals(**values),
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
                self._batch_write([{"PutRequest": {"Item": dump(task_to_item(t, self.cipher))}}])
            return
        requests: list[Any] = []
        for start in range(0, len(tasks), PAGE_SIZE):
            chunk = tasks[start : start + PAGE_SIZE]
            page = page_item(chunk, self._retention_ms)
            requests.append({"PutRequest": {"Item": dump(page)}})
            for t in chunk:
                item = task_to_item(t, self.cipher)
                # Listed by its page, which it names (backfill_listing leaves it alone).
                del item["listed"]
                item["page"] = page["pk"]
                requests.append({"PutRequest": {"Item": dump(item)}})
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._batch_write(requests[start : start + BATCH_WRITE_LIMIT])

    def _batch_write(self, requests: list[Any]) -> None:
        delay = 0.05
        while requests:
            out = self._db.batch_write_item(RequestItems={self.table: requests})
            requests = list(out.get("UnprocessedItems", {}).get(self.table, []))
            if requests:
                time.sleep(delay)  # throttled: back off before resubmitting the rest
                delay = min(delay * 2, 2.0)
