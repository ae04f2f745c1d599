"""Distributed lease locks with fencing tokens, kept in the tasks table.

A lock is one item, `pk` = "lock#<tenant>#<name>" (tenant names cannot contain "#", so
two tenants' keys never collide and a tenant can only ever address its own locks):

- `fence` (N): the fencing token of the latest acquisition. It strictly increases per
  lock, so a resource guarded by the lock can refuse writes that carry an older token.
- `holder` (S): who holds it, for diagnostics; absent once released. Release and extend
  test `fence`, never `holder`.
- `lock_until` (N, epoch ms): when the current hold ends. A lock is free when the item
  is absent or `lock_until <= now`, so an expired lock is free at once, whether or not
  DynamoDB's TTL has removed it yet.
- `expires_at` (N, epoch s): the table's TTL attribute, an hour after the hold ends,
  so abandoned locks disappear. The item carries no `listed` or `created_at`, so it
  never enters the `listing` index and is never mistaken for a task.

Tokens survive that deletion: an acquisition writes `fence = if_not_exists(fence,
now_ms * 1000) + 1`. Within an item's life the token grows by one per acquisition, and
DynamoDB accepts at most 1,000 writes a second to one item, so it stays below
`now_ms * 1000` of any later moment; TTL deletes the item no sooner than an hour after
the last hold, so a re-created item starts above every token the old one issued (even
with clocks an hour apart).

`LockStore` does the I/O; `Worker` takes task-level locks (`TaskRequest.lock_key`) with
it and `lock()` is the context manager for handlers.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from stratoq.core import policy, registry
from stratoq.core.clock import now_ms
from stratoq.core.errors import LockUnavailable

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

_ser = TypeSerializer()

MAX_NAME_LENGTH = 256  # as TaskRequest.lock_key
# Keep a released or expired lock item this long before TTL may delete it (see above).
TTL_GRACE_SECONDS = 3600
# A fresh item's first token is now_ms * FENCE_SCALE + 1 (see the module docstring).
FENCE_SCALE = 1000


def lock_pk(tenant: str, name: str) -> str:
    if not tenant or "#" in tenant:
        raise ValueError(f"invalid tenant {tenant!r}")
    if not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"a lock name has 1 to {MAX_NAME_LENGTH} characters")
    return f"lock#{tenant}#{name}"


def _vals(**values: Any) -> dict[str, Any]:
    return {f":{k}": _ser.serialize(v) for k, v in values.items()}


@dataclass(frozen=True)
class Acquired:
    """The caller holds lock `name` of `tenant` until `until_ms`, fenced by `token`."""

    tenant: str
    name: str
    token: int
    until_ms: int


@dataclass(frozen=True)
class Held:
    """Someone else holds the lock until `until_ms` (unless they release it sooner)."""

    holder: str
    until_ms: int


class LockStore:
    """Conditional writes of lock items in the tasks table."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def acquire(self, tenant: str, name: str, owner: str, ttl_ms: int, now: int) -> Acquired | Held:
        """Take the lock for `ttl_ms` if it is free; else say who holds it until when."""
        until = now + max(1, ttl_ms)
        # Names this acquisition, so that its retry after a lost answer knows it.
        nonce = uuid.uuid4().hex
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": lock_pk(tenant, name)}},
                UpdateExpression=(
                    "SET fence = if_not_exists(fence, :floor) + :one, holder = :owner, "
                    "lock_until = :until, expires_at = :ttl, acquisition = :nonce"
                ),
                # Guards exclusivity: only a lock that was never taken, was released
                # (lock_until 0) or whose hold has ended can be taken; of two racing
                # acquirers exactly one passes.
                ConditionExpression="attribute_not_exists(pk) OR lock_until <= :now",
                ExpressionAttributeValues=_vals(
                    floor=now * FENCE_SCALE,
                    one=1,
                    owner=owner[:256],
                    until=until,
                    ttl=until // 1000 + TTL_GRACE_SECONDS,
                    now=now,
                    nonce=nonce,
                ),
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: Any = exc.response.get("Item") or {}
            if old.get("acquisition", {}).get("S") == nonce:
                # Our own acquisition, applied by a try whose answer was lost (botocore
                # retried it, and the retry met the hold it had just taken): ours.
                return Acquired(tenant, name, int(old["fence"]["N"]), until)
            return Held(
                holder=old.get("holder", {}).get("S", "?"),
                until_ms=int(old.get("lock_until", {}).get("N", now)),
            )
        token = int(out["Attributes"]["fence"]["N"])
        return Acquired(tenant, name, token, until)

    def extend(self, lock: Acquired, until_ms: int) -> bool:
        """Push the hold's end out to `until_ms`; False: the lock is no longer ours."""
        return self._fenced(
            lock,
            "SET lock_until = :until, expires_at = :ttl",
            until=until_ms,
            ttl=until_ms // 1000 + TTL_GRACE_SECONDS,
        )

    def release(self, lock: Acquired, now: int) -> bool:
        """Free the lock now; False: it was not ours any more (expired and taken over)."""
        # The item stays (with its token counter) until TTL removes it later.
        return self._fenced(
            lock,
            "SET lock_until = :zero, expires_at = :ttl REMOVE holder",
            releasing=True,
            zero=0,
            ttl=now // 1000 + TTL_GRACE_SECONDS,
        )

    def _fenced(
        self, lock: Acquired, expression: str, *, releasing: bool = False, **values: Any
    ) -> bool:
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": lock_pk(lock.tenant, lock.name)}},
                UpdateExpression=expression,
                # Fencing: only the holder of this very acquisition may extend or
                # release it. After expiry and a takeover the token differs; after a
                # release `holder` is gone, so a late extend cannot revive the lock.
                ConditionExpression="fence = :tok AND attribute_exists(holder)",
                ExpressionAttributeValues=_vals(tok=lock.token, **values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                old: Any = exc.response.get("Item") or {}
                # Still our token but no holder: released by this acquisition (only its
                # holder can), e.g. by a try of this very release whose answer was lost.
                return (
                    releasing
                    and old.get("fence", {}).get("N") == str(lock.token)
                    and "holder" not in old
                )
            raise
        return True


# --------------------------------------------------------------- handler locks
# The store `lock()` uses: bound by the runner around each handler call (`bound`), so a
# handler takes locks through its own process's store and no module state is shared.
_bound: ContextVar[LockStore | None] = ContextVar("stratoq_lock_store", default=None)


@contextmanager
def bound(store: LockStore) -> Iterator[None]:
    """Make `lock()` inside this block (a handler call) use `store`."""
    token = _bound.set(store)
    try:
        yield
    finally:
        _bound.reset(token)


def _store() -> LockStore:
    store = _bound.get()
    if store is None:
        raise RuntimeError("stratoq.lock() is only available inside a task handler")
    return store


class HeldLock:
    """The lock a `with stratoq.lock(...)` block holds.

    `token` is the fencing token: pass it to conditional writes of the guarded resource
    (accept only tokens at least as new as the last one seen) so that a holder whose
    lock expired while it was paused cannot overwrite a newer holder's work. `lost`
    turns true if a renewal was refused (the hold had already ended and was taken over).
    """

    def __init__(self, acquired: Acquired) -> None:
        self.name = acquired.name
        self.token = acquired.token
        self._acquired = acquired
        self._lost = threading.Event()

    @property
    def lost(self) -> bool:
        return self._lost.is_set()


class _Renewer:
    """Extends a handler's lock every ttl/3 while its block runs."""

    def __init__(self, store: LockStore, held: HeldLock, ttl_ms: int) -> None:
        self._store = store
        self._held = held
        self._ttl_ms = ttl_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stratoq-lock", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = max(0.1, self._ttl_ms / 3000)
        while not self._stop.wait(interval):
            try:
                if not self._store.extend(self._held._acquired, now_ms() + self._ttl_ms):
                    logger.warning("lock renewal refused: the lock was lost")
                    self._held._lost.set()
                    return
            except Exception:
                # A transient error: the next renewal tries again before the hold ends.
                logger.exception("lock renewal failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def lock(
    name: str,
    ttl: float = 30.0,
    wait: float = 10.0,
    *,
    clock: Callable[[], int] = now_ms,
    rng: random.Random | None = None,
) -> Iterator[HeldLock]:
    """Hold the distributed lock `name` of the current task's tenant inside a handler.

    Waits up to `wait` seconds for it, polling with exponential backoff (50 ms doubling
    to 1 s, jittered), then raises `LockUnavailable`, a `Retry` whose delay derives from
    the holder's remaining hold: the task retries later, and that counts as an attempt.
    While the block runs the lock is renewed every `ttl / 3` seconds, so `ttl` only
    bounds how long a crashed holder keeps it. Released when the block exits, however it
    exits. Not re-entrant: taking a lock the task already holds (its own `lock_key`
    included, which shares this namespace) waits and then raises.
    """
    ctx = registry.context()
    if ttl <= 0 or wait < 0:
        raise ValueError("ttl must be positive and wait not negative")
    store = _store()
    rand = rng or random.Random()
    ttl_ms = max(1, int(ttl * 1000))
    owner = f"task {ctx.task_id} attempt {ctx.attempt} pid {os.getpid()}"
    deadline = time.monotonic() + wait
    pause = 0.05
    while True:
        now = clock()
        got = store.acquire(ctx.tenant, name, owner, ttl_ms, now)
        if isinstance(got, Acquired):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            delay = policy.locked_delay(got.until_ms, now, rand)
            raise LockUnavailable(name, delay)
        # Never sleep past the deadline or much past the holder's end of hold.
        until_free = max(0.01, (got.until_ms - now) / 1000)
        time.sleep(min(left, until_free, pause * rand.uniform(0.5, 1.0)))
        pause = min(pause * 2, 1.0)
    held = HeldLock(got)
    renewer = _Renewer(store, held, ttl_ms)
    try:
        yield held
    finally:
        renewer.stop()
        try:
            store.release(got, clock())
        except Exception:
            # It expires by itself within ttl; nothing else to do from here.
            logger.exception("releasing a lock failed; it expires after its ttl")
