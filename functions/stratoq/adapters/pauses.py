"""The pause state in the tasks table: one item, `pk` = "pauses".

- `queues` (SS): the paused logical queues; absent when none is.
- `task_names` (SS): the paused task names; absent when none is.
- `updated_at` (N, epoch ms) and `updated_by` (S, the tenant): the last change, for
  diagnostics.

One item, not one per pause, so a worker learns the whole state with one GetItem per
cache TTL however much is paused (`stratoq.core.pauses.PauseCache`). It has no `name`,
`listed` or `created_at`, so it is never read as a task nor enters the `listing`
index. Pause and resume are single `ADD` / `DELETE` updates of a string set: DynamoDB
applies them atomically, so two admins pausing two queues at once both win, and pausing
twice is pausing once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from stratoq.core.errors import InvalidRequestError
from stratoq.core.pauses import PauseState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

PAUSES_PK = "pauses"
# Keeps the item (400 KB at most) and every worker's read of it small.
MAX_PAUSED = 1000

Kind = Literal["queue", "task_name"]
_ATTRIBUTE: dict[str, str] = {"queue": "queues", "task_name": "task_names"}


class PauseStore:
    """Reads and changes the pause item."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def read(self, consistent: bool = False) -> PauseState:
        """What is paused. Workers read eventually consistent (half the cost; their
        cache is seconds stale anyway); the API reads consistently to answer."""
        out = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": PAUSES_PK}},
            ConsistentRead=consistent,
            ProjectionExpression="queues, task_names",
        )
        item = out.get("Item", {})
        return PauseState(
            queues=frozenset(item.get("queues", {}).get("SS", [])),
            task_names=frozenset(item.get("task_names", {}).get("SS", [])),
        )

    def pause(self, kind: Kind, name: str, by: str, now: int) -> bool:
        """Pause queue or task name `name`; False if it already was (nothing changed)."""
        attr = _ATTRIBUTE[kind]
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": PAUSES_PK}},
                UpdateExpression="ADD #s :one SET updated_at = :now, updated_by = :by",
                # Closes the race of admins pausing different names at once when the
                # set is nearly full: each checks the size it adds to, so the set never
                # grows past MAX_PAUSED. Pausing what is already paused always passes.
                ConditionExpression=(
                    "attribute_not_exists(#s) OR size(#s) < :max OR contains(#s, :name)"
                ),
                ExpressionAttributeNames={"#s": attr},
                ExpressionAttributeValues={
                    ":one": {"SS": [name]},
                    ":name": {"S": name},
                    ":max": {"N": str(MAX_PAUSED)},
                    ":now": {"N": str(now)},
                    ":by": {"S": by},
                },
                ReturnValues="ALL_OLD",  # the set before: did this change it?
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise InvalidRequestError(
                f"{MAX_PAUSED} {kind.replace('_', ' ')}s are paused already; resume some first"
            ) from None
        before = out.get("Attributes", {}).get(attr, {}).get("SS", [])
        return name not in before

    def resume(self, kind: Kind, name: str, by: str, now: int) -> bool:
        """Resume queue or task name `name`; False if it was not paused."""
        attr = _ATTRIBUTE[kind]
        # Unconditional: DELETE from a set is atomic and resuming twice is resuming once.
        out = self._db.update_item(
            TableName=self.table,
            Key={"pk": {"S": PAUSES_PK}},
            UpdateExpression="DELETE #s :one SET updated_at = :now, updated_by = :by",
            ExpressionAttributeNames={"#s": attr},
            ExpressionAttributeValues={
                ":one": {"SS": [name]},
                ":now": {"N": str(now)},
                ":by": {"S": by},
            },
            ReturnValues="ALL_OLD",  # the set before: did this change it?
        )
        before = out.get("Attributes", {}).get(attr, {}).get("SS", [])
        return name in before
