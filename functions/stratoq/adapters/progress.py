"""Progress reports of running tasks in the tasks table: one `progress` map per task
item (`value` N, `message` S or absent, `at` N epoch ms), the latest report.

`ProgressStore.write` does the I/O; `stratoq.services.progress.AttemptProgress` throttles
an attempt's reports to it. A handler's process binds its store (`bound`): the worker's
own for inline handlers (Lambda), each slot process its own (pollers).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from stratoq.adapters.store.codec import vals

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class ProgressStore:
    """Writes a running task's progress, fenced by its lease token."""

    def __init__(self, db: DynamoDBClient, table: str) -> None:
        self._db = db
        self._table = table

    def write(
        self,
        task_id: str,
        tenant: str,
        token: str,
        value: float,
        message: str | None,
        at_ms: int,
    ) -> bool:
        """Store the report as the task's latest; False if the lease `token` no longer
        holds the task (taken over, or the attempt's outcome already recorded)."""
        # DynamoDB numbers are Decimals; str() keeps the float's shortest spelling.
        report: dict[str, object] = {"value": Decimal(str(value)), "at": at_ms}
        if message is not None:
            report["message"] = message
        try:
            self._db.update_item(
                TableName=self._table,
                Key={"pk": {"S": task_id}},
                UpdateExpression="SET progress = :p",
                # Fenced by the lease token: a worker whose lease lapsed and was taken over
                # (or whose outcome is recorded: the token is removed then) must not
                # overwrite the new holder's progress with its stale attempt's. The tenant
                # check keeps a write from ever landing on another tenant's item.
                ConditionExpression="lease_token = :tok AND tenant = :tenant",
                ExpressionAttributeValues=vals(p=report, tok=token, tenant=tenant),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


_bound: ContextVar[ProgressStore | None] = ContextVar("stratoq_progress_store", default=None)


@contextmanager
def bound(store: ProgressStore) -> Iterator[None]:
    """Make handler calls inside this block report progress to `store`."""
    token = _bound.set(store)
    try:
        yield
    finally:
        _bound.reset(token)


def current() -> ProgressStore | None:
    """The store bound here, if any (none: reports go nowhere, e.g. eager tests)."""
    return _bound.get()
