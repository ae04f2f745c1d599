"""Concurrency slots, rate-limit buckets and the operator's limits, in the tasks table.

Slots (`SlotStore`): a scope (`stratoq.core.limits.plan`) with limit N has N items,
`pk` = "slot#<i>#<scope>" for i in 0..N-1 (the index first, so no scope's text can make
another scope's key), each held by at most one task:
- `holder` (S): the holding task and a nonce of its acquisition; absent: free (released).
- `hold_until` (N, epoch ms): when the hold ends unless renewed. A slot whose hold has
  ended is free, whether or not its holder ever released it (a crashed worker).
- `expires_at` (N, epoch s): the table's TTL, an hour after the hold ends.
DynamoDB cannot count a map's live entries in a condition, so "fewer than N holders" is
"one of N items free", each taken by its own conditional write.

Buckets (`BucketStore`): one item per scope, `pk` = "bucket#<scope>": `tat` (N, epoch
ms: when its next token comes due; `stratoq.core.limits.take` has the math) and
`expires_at` (TTL). A token is one conditional write, no read: an atomic increment of
`tat` while the bucket is busy, `tat` set to now plus an interval when it is idle.

Operator limits (`LimitStore`): one item, `pk` = "limits", one map attribute per limited
queue ("queue:<name>") or task name ("task_name:<name>"): `max_concurrency` (N),
`rate_limit` (S). One item so a worker learns every limit with one GetItem per cache
TTL, as the pause item.

None of these items has `name`, `listed` or `created_at`: none is read as a task or
enters the `listing` index.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from stratoq.adapters.store.codec import load, vals
from stratoq.core.limits import (
    SLOT_READ_BATCH,
    Limits,
    LimitsState,
    Rate,
    slot_order,
    take,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

LIMITS_PK = "limits"
# Keep a freed slot's or an idle bucket's item this long before TTL may delete it.
TTL_GRACE_SECONDS = 3600
# Writes one token costs at most under contention before the task waits instead.
BUCKET_ATTEMPTS = 5

Kind = Literal["queue", "task_name"]


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def slot_pk(scope: str, index: int) -> str:
    return f"slot#{index}#{scope}"


@dataclass(frozen=True)
class Slot:
    """Slot `index` of `scope`, held by `holder` until `until_ms` (unless renewed)."""

    scope: str
    index: int
    holder: str
    until_ms: int


class SlotStore:
    """Conditional writes of concurrency slots."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def holders(self, scope: str, limit: int) -> dict[int, int]:
        """The slots of `scope` that have a holder: slot -> end of its hold (ms). Read
        eventually consistent: a slot seen free that is not fails its write, one seen
        held that just freed costs a wait, never a second holder."""
        found: dict[int, int] = {}
        for start in range(0, limit, SLOT_READ_BATCH):
            keys: list[Any] = [
                {"pk": {"S": slot_pk(scope, i)}}
                for i in range(start, min(limit, start + SLOT_READ_BATCH))
            ]
            projection = "pk, holder, hold_until"
            request: Any = {self.table: {"Keys": keys, "ProjectionExpression": projection}}
            for _ in range(3):
                out = self._db.batch_get_item(RequestItems=request)
                for item in out.get("Responses", {}).get(self.table, []):
                    if "holder" not in item:
                        continue  # released
                    index = int(item["pk"]["S"].split("#", 2)[1])
                    found[index] = int(item.get("hold_until", {}).get("N", "0"))
                request = out.get("UnprocessedKeys") or {}
                if not request:
                    break
            for key in (request.get(self.table) or {}).get("Keys", []):
                # Unread (throttled): counted as held, so a limit is never exceeded.
                found[int(key["pk"]["S"].split("#", 2)[1])] = 2**62
        return found

    def acquire(
        self, scope: str, limit: int, holder: str, until_ms: int, now: int, rng: random.Random
    ) -> Slot | None:
        """Hold a free slot of `scope` until `until_ms`; None: all `limit` are held."""
        for index in slot_order(self.holders(scope, limit), limit, now, rng):
            if self._take(scope, index, holder, until_ms, now):
                return Slot(scope, index, holder, until_ms)
        return None

    def _take(self, scope: str, index: int, holder: str, until_ms: int, now: int) -> bool:
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": slot_pk(scope, index)}},
                UpdateExpression="SET holder = :me, hold_until = :until, expires_at = :ttl",
                # Two workers racing for the last free slot: exactly one write passes,
                # the other finds a holder. A crashed holder's slot passes once its hold
                # has ended, so a slot frees itself when its lease does.
                ConditionExpression="attribute_not_exists(holder) OR hold_until <= :now",
                ExpressionAttributeValues=vals(
                    me=holder,
                    until=until_ms,
                    ttl=until_ms // 1000 + TTL_GRACE_SECONDS,
                    now=now,
                ),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def extend(self, slot: Slot, until_ms: int) -> bool:
        """Push the hold's end to `until_ms` (the heartbeat); False: the slot is not ours
        any more (the hold ended and another task took it)."""
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": slot_pk(slot.scope, slot.index)}},
                UpdateExpression="SET hold_until = :until, expires_at = :ttl",
                # A worker stalled past its hold must not extend the hold of the task
                # that took the slot over (its holder differs), nor revive a released one.
                ConditionExpression="holder = :me",
                ExpressionAttributeValues=vals(
                    me=slot.holder, until=until_ms, ttl=until_ms // 1000 + TTL_GRACE_SECONDS
                ),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def release(self, slot: Slot) -> bool:
        """Free the slot now; False: it was not ours any more (nothing to free)."""
        try:
            # An update, not a delete (workers may delete nothing); TTL removes the item.
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": slot_pk(slot.scope, slot.index)}},
                UpdateExpression="REMOVE holder SET hold_until = :zero",
                # A late release (our hold ended, another task took the slot) must not
                # free the new holder's slot.
                ConditionExpression="holder = :me",
                ExpressionAttributeValues=vals(me=slot.holder, zero=0),
            )
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True


class BucketStore:
    """Token buckets, each token taken with one conditional write and no read."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table
        # Per scope, whether the bucket was busy (`tat` ahead) at the last take: the
        # first write tried, so a take usually costs one write.
        self._busy: dict[str, bool] = {}

    def reserve(self, scope: str, rate: Rate, now: int) -> int | None:
        """Take a token of `scope`'s bucket: the ms until it is the caller's (0: now).
        None: every write of `BUCKET_ATTEMPTS` lost a race (the caller waits instead)."""
        dues = self.reserve_many(scope, rate, now, 1)
        return None if dues is None else dues[0] - now

    def reserve_many(self, scope: str, rate: Rate, now: int, count: int) -> list[int] | None:
        """Take `count` tokens of `scope`'s bucket in one write: when each is the
        caller's (epoch ms). None: every write of `BUCKET_ATTEMPTS` lost a race."""
        key = {"pk": {"S": f"bucket#{scope}"}}
        # Refreshed at every take: a bucket with takers keeps its promises; an idle one
        # goes a day and an hour after its last take (promises a day ahead at most).
        ttl = now // 1000 + 86_400 + TTL_GRACE_SECONDS
        step = _number(count * rate.interval_ms)
        busy = self._busy.get(scope, False)
        for _ in range(BUCKET_ATTEMPTS):
            try:
                if busy:
                    out = self._db.update_item(
                        TableName=self.table,
                        Key=key,
                        UpdateExpression="SET tat = tat + :step, expires_at = :ttl",
                        # Busy (the next token is still to come): an atomic increment, so
                        # racing takers each get their own tokens, none waits on another's
                        # read. Fails only if the bucket went idle meanwhile.
                        ConditionExpression="tat > :now",
                        ExpressionAttributeValues=vals(step=step, ttl=ttl, now=now),
                        ReturnValues="UPDATED_OLD",
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
                    _, dues = take(float(out["Attributes"]["tat"]["N"]), rate, now, count)
                else:
                    after, dues = take(None, rate, now, count)
                    self._db.update_item(
                        TableName=self.table,
                        Key=key,
                        UpdateExpression="SET tat = :after, expires_at = :ttl",
                        # Idle (new, or its next token already due): the tokens start now.
                        # Two idle-takers race: one write passes, the other finds the
                        # bucket busy and takes the next tokens with the increment.
                        ConditionExpression="attribute_not_exists(tat) OR tat <= :now",
                        ExpressionAttributeValues=vals(after=_number(after), ttl=ttl, now=now),
                        ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    )
            except ClientError as exc:
                if not _conditional_failed(exc):
                    raise
                busy = not busy
                continue
            self._busy[scope] = dues[-1] > now
            return dues
        logger.warning("rate-limit bucket contended; the task waits", extra={"scope": scope})
        return None


def _number(ms: float) -> Decimal:
    # DynamoDB numbers are decimals: microseconds are precision enough.
    return Decimal(f"{ms:.3f}")


def _attribute(kind: Kind, name: str) -> str:
    return f"{kind}:{name}"


class LimitStore:
    """Reads and changes the operator's limits (the "limits" item)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def read(self, consistent: bool = False) -> LimitsState:
        """Every operator limit. Workers read eventually consistent (their cache is
        seconds stale anyway); the API reads consistently to answer."""
        out = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": LIMITS_PK}}, ConsistentRead=consistent
        )
        queues: dict[str, Limits] = {}
        names: dict[str, Limits] = {}
        for attr, value in load(out.get("Item") or {}).items():
            kind, _, name = attr.partition(":")
            if not isinstance(value, dict) or not name:
                continue
            limits = _limits(value)
            if kind == "queue":
                queues[name] = limits
            elif kind == "task_name":
                names[name] = limits
        return LimitsState(queues, names)

    def set(self, kind: Kind, name: str, limits: Limits, by: str, now: int) -> None:
        """Set queue or task name `name`'s limits (replacing any it had)."""
        entry: dict[str, Any] = {"by": by, "at": now}
        if limits.max_concurrency is not None:
            entry["max_concurrency"] = limits.max_concurrency
        if limits.rate_limit is not None:
            entry["rate_limit"] = limits.rate_limit
        # Unconditional: each name has its own attribute, so two admins limiting two
        # names at once both win, and the last of two writes to one name wins whole.
        self._db.update_item(
            TableName=self.table,
            Key={"pk": {"S": LIMITS_PK}},
            UpdateExpression="SET #a = :e",
            ExpressionAttributeNames={"#a": _attribute(kind, name)},
            ExpressionAttributeValues=vals(e=entry),
        )

    def remove(self, kind: Kind, name: str) -> bool:
        """Lift `name`'s limits; False if it had none."""
        # Unconditional: REMOVE is atomic and removing twice is removing once.
        out = self._db.update_item(
            TableName=self.table,
            Key={"pk": {"S": LIMITS_PK}},
            UpdateExpression="REMOVE #a",
            ExpressionAttributeNames={"#a": _attribute(kind, name)},
            ReturnValues="UPDATED_OLD",
        )
        return _attribute(kind, name) in out.get("Attributes", {})


def _limits(value: dict[str, Any]) -> Limits:
    concurrency = value.get("max_concurrency")
    return Limits(
        max_concurrency=None if concurrency is None else int(concurrency),
        rate_limit=value.get("rate_limit"),
    )


class WaitMarks:
    """`waiting_for` on task items: why a due task has not started (claims remove it)."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def mark(self, task_id: str, tenant: str, reason: str) -> None:
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": task_id}},
                UpdateExpression="SET waiting_for = :why",
                # A worker claiming the task meanwhile (a duplicate message) removes the
                # mark; writing it after would show a running task as waiting. Only a
                # task not started yet is marked (none at all: not stored yet).
                ConditionExpression="#s IN (:q, :s, :r) AND tenant = :tenant",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=vals(
                    why=reason, q="queued", s="scheduled", r="retrying", tenant=tenant
                ),
            )
        except ClientError as exc:
            if not _conditional_failed(exc):
                raise
