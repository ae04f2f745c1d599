"""Debounce items: one per (tenant, key) in the tasks table, naming the key's latest task.

`pk` = "debounce#<tenant>#<key>"; `latest` is the id of the key's most recently enqueued
task and `at_us` its enqueue time (epoch microseconds). The enqueue writes it (`claim`)
and learns the task it supersedes from the same write; the worker reads it (`latest`)
before a debounced task's first attempt. TTL (`expires_at`) removes it a day after its
latest task was due: by then that task has run, and a later enqueue starts afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stratoq.adapters.store.codec import load, vals

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

PREFIX = "debounce#"
# How long an item outlives its latest task's due time.
KEEP_SECONDS = 24 * 3600


def debounce_pk(tenant: str, key: str) -> str:
    """The item of `tenant`'s debounce key (a tenant never sees another's)."""
    return f"{PREFIX}{tenant}#{key}"


@dataclass(frozen=True)
class Latest:
    """What writing a task into its key's item found.

    `won`: the task is the key's latest now, and `previous` is the task it superseded
    (None: none, or our own write applied twice). Not `won`: a task enqueued later
    already holds the item (`previous` names it): the caller's task is the superseded one.
    """

    won: bool
    previous: str | None


class DebounceStore:
    """The debounce items of the tasks table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def claim(self, tenant: str, key: str, task_id: str, at_us: int, due_ms: int) -> Latest:
        """Make `task_id` (enqueued at `at_us`) its key's latest: one UpdateItem, which
        returns the task it replaced."""
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": debounce_pk(tenant, key)}},
                UpdateExpression="SET latest = :id, at_us = :at, expires_at = :ttl",
                # Closes the race of two enqueues of one key whose writes land out of
                # order: the later enqueue (by time, then id) holds the item whichever
                # write comes first, so an older one never takes it back (it learns that
                # it is superseded instead). A write retried after a lost answer meets
                # its own id and is refused too (read as won, below).
                ConditionExpression=(
                    "attribute_not_exists(pk) OR at_us < :at OR (at_us = :at AND latest < :id)"
                ),
                ExpressionAttributeValues=vals(
                    id=task_id, at=at_us, ttl=due_ms // 1000 + KEEP_SECONDS
                ),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raw: Any = exc.response.get("Item")
            holder = str(load(raw)["latest"]) if raw else None
            if holder == task_id:
                # Our own write, applied by a try whose answer was lost: what it replaced
                # is gone with that answer; the worker's check still cancels it.
                return Latest(True, None)
            return Latest(False, holder)
        old: Any = out.get("Attributes")
        previous = str(load(old)["latest"]) if old else None
        return Latest(True, previous if previous != task_id else None)

    def latest(self, tenant: str, key: str) -> str | None:
        """The key's latest task id (None: no item, e.g. expired). A consistent read: a
        worker must see the enqueue that superseded the task it is about to run."""
        out = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": debounce_pk(tenant, key)}},
            ProjectionExpression="latest",
            ConsistentRead=True,
        )
        raw: Any = out.get("Item")
        return str(load(raw)["latest"]) if raw else None
