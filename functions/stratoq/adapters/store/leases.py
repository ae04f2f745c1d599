"""The lease state machine: a worker claims a task, holds it, and records the outcome.

A claim sets `status` running, a fresh `lease_token` and `claim_after` = the lease end
plus LEASE_SLACK_MS, and counts the attempt; it succeeds only on a task whose
`claim_after` has come, up to EARLY_MS early (a due runnable task, or a running one whose
lease ended: its holder died and the claim takes over). Every later write of the attempt
(extend, complete, retry, fail, release, unclaim, lost-attempt notes) is fenced by that
token, so a holder that lost its lease cannot overwrite the newer attempt. A final task
has no `claim_after`, so nothing claims it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from stratoq.adapters.crypto import encode_value
from stratoq.adapters.store.codec import gsi_key, item_to_task, load, vals
from stratoq.adapters.store.fencing import FencedWrites
from stratoq.core.clock import from_ms
from stratoq.core.ids import new_token
from stratoq.core.models import FINAL_STATUSES, RUNNABLE_STATUSES, Task, TaskStatus

MAX_ERROR_CHARS = 2000
# A due task may be claimed up to EARLY_MS early (SQS delays have whole-second
# resolution), so a lease is stored as ending LEASE_SLACK_MS later: the same early-claim
# allowance then never cuts into a live lease (it is taken over only once it has ended).
EARLY_MS = 1000
LEASE_SLACK_MS = EARLY_MS + 1


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


class Renewal(Enum):
    """What a heartbeat's lease renewal found."""

    RENEWED = "renewed"
    LOST = "lost"  # another worker holds the task now, or its outcome is recorded
    CANCEL_REQUESTED = "cancel_requested"  # still ours, but a user cancelled the task


def _error_entry(attempt: int, kind: str, message: str, now_ms: int) -> dict[str, Any]:
    return {"attempt": attempt, "kind": kind, "message": message[:MAX_ERROR_CHARS], "at": now_ms}


class TaskLeases(FencedWrites):
    """Claims and the fenced writes of the lease holder."""

    def claim(
        self, task_id: str, tenant: str, now_ms: int, lease_ms: int, holder: str | None = None
    ) -> ClaimResult:
        """Take the lease on a task so that only the caller runs this attempt. `holder`
        names the caller for people (`Task.holder`); it stays after the attempt, as the
        last holder. The token alone fences: it is never shown."""
        token = new_token()
        expires = now_ms + lease_ms
        # The holder rides on the claim's own write: no request of its own.
        named = ", holder = :holder" if holder else ""
        try:
            out = self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": task_id}},
                # `claim_prev_*` keep what the claim overwrote (operands read the item as
                # it was), for a claim that must recognise itself after a lost answer.
                UpdateExpression=(
                    "SET claim_prev_status = #s, "
                    "claim_prev_started = if_not_exists(started_at, :zero), "
                    "#s = :running, claim_after = :cl, lease_token = :tok, "
                    "started_at = :now, attempts = attempts + :one" + named + " REMOVE waiting_for"
                ),
                # Guards against running a task twice: only a task that is due (runnable
                # and past its delay, up to a second early for SQS's whole-second
                # delays) or whose holder's lease has ended (the holder died) is
                # claimable; a concurrent duplicate delivery loses here; a final task has
                # no claim_after at all. The tenant check catches a message that does not
                # belong to the task.
                ConditionExpression="claim_after <= :due AND tenant = :tenant",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=vals(
                    running="running",
                    cl=expires + LEASE_SLACK_MS,
                    tok=token,
                    now=now_ms,
                    due=now_ms + EARLY_MS,
                    one=1,
                    zero=0,
                    tenant=tenant,
                    **({"holder": holder} if holder else {}),
                ),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raw: Any = exc.response.get("Item")
            item = load(raw) if raw else None
            if item is not None and item.get("lease_token") == token:
                # Our own claim, applied by an attempt whose answer was lost (botocore
                # retried it, and the retry met the lease it had just taken): the task
                # is ours, not busy with someone else. Tokens are fresh random values.
                return self._own_claim(item, token, expires)
            return self._refusal(item, tenant)
        old = load(out["Attributes"])
        old_task = item_to_task(old, self.cipher)
        took_over = old_task.status is TaskStatus.RUNNING
        task = old_task.model_copy(
            update={
                "status": TaskStatus.RUNNING,
                "attempts": old_task.attempts + 1,
                "started_at": from_ms(now_ms),
                "holder": holder or old_task.holder,
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

    def _own_claim(self, item: dict[str, Any], token: str, expires: int) -> Claimed:
        """The Claimed our own earlier claim of `item` made (see `claim`)."""
        previous = TaskStatus(item.get("claim_prev_status", TaskStatus.QUEUED.value))
        started = int(item.get("claim_prev_started", 0))
        return Claimed(
            task=item_to_task(item, self.cipher),
            token=token,
            lease_expires_ms=expires,
            took_over=previous is TaskStatus.RUNNING,
            previous_status=previous,
            previous_started_ms=started or None,
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

    def extend_lease(self, task_id: str, token: str, until_ms: int) -> Renewal:
        """Push the lease end out, unless the task was cancelled: the same write tells
        the heartbeat about a cancel request, at no extra request (the refusal returns
        the item it was refused on)."""
        refused = self._fenced_write(
            task_id,
            token,
            "SET claim_after = :cl",
            {"cl": until_ms + LEASE_SLACK_MS},
            running_only=True,
            cancellable=True,
        )
        if refused is None:
            return Renewal.RENEWED
        return Renewal.CANCEL_REQUESTED if _cancel_pending(refused, token) else Renewal.LOST

    def cancel_requested(self, task_id: str, token: str) -> bool:
        """Whether the attempt holding `token` has been asked to stop (its task was
        cancelled): the check of attempts without a heartbeat (inline, Lambda). An
        eventually consistent read of two attributes: half a read unit."""
        out = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": task_id}},
            ProjectionExpression="lease_token, cancel_requested_at, #s",
            ExpressionAttributeNames={"#s": "status"},
        )
        raw: Any = out.get("Item")
        return raw is not None and _cancel_pending(load(raw), token)

    def finish_cancelled(
        self,
        task_id: str,
        tenant: str,
        token: str,
        attempt: int,
        message: str,
        now_ms: int,
        *,
        requested: bool = True,
    ) -> bool:
        """Record the task `cancelled` after its attempt `attempt` was stopped (or never
        ran: `attempt` is then the attempts that did) because a cancel was requested
        (`requested=False`: the worker's own decision, a superseded debounced task).
        False: the lease is no longer ours, or no cancel was requested."""
        expression = (
            "SET #s = :st, finished_at = :now, expires_at = :ttl, attempts = :att "
            "REMOVE claim_after, next_attempt_at, lease_token, #e"
        )
        values: dict[str, Any] = {
            "st": "cancelled",
            "now": now_ms,
            "att": attempt,
            "ttl": (now_ms + self._retention_ms) // 1000,
        }
        if message:
            expression = expression.replace(
                " REMOVE", ", errors = list_append(if_not_exists(errors, :empty), :err) REMOVE"
            )
            values.update(empty=[], err=[_error_entry(attempt, "cancelled", message, now_ms)])
        # Fenced like every outcome, and only on a request: a task nobody cancelled
        # must never end `cancelled` by a worker's mistake (a superseded task is the
        # exception, decided from its debounce item before the attempt started).
        return self._fenced_update(
            task_id,
            token,
            expression,
            values,
            {"#e": "error"},
            recorded=True,
            running_only=True,
            cancel_required=requested,
        )

    def complete(self, task_id: str, tenant: str, token: str, result: Any, now_ms: int) -> bool:
        return self._fenced_update(
            task_id,
            token,
            # A final task keeps no retry's error or time (they stay in `errors`).
            "SET #s = :st, #r = :res, finished_at = :now, expires_at = :ttl "
            "REMOVE claim_after, lease_token, next_attempt_at, #e",
            {
                "st": "succeeded",
                "res": encode_value(
                    result, self.cipher, field="result", tenant=tenant, task_id=task_id
                ),
                "now": now_ms,
                "ttl": (now_ms + self._retention_ms) // 1000,
            },
            {"#r": "result", "#e": "error"},
            recorded=True,
            cancellable=True,
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
        entry = _error_entry(attempt, kind, message, now_ms)
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
                "err": [entry],
            },
            {"#e": "error"},
            recorded=True,
            entry=entry,
            cancellable=True,
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
        entry = _error_entry(attempt, kind, message, now_ms)
        return self._fenced_update(
            task_id,
            token,
            # The last error goes to `errors` only: `error` is a pending retry's.
            "SET #s = :st, gsi1pk = :gsi, finished_at = :now, expires_at = :ttl, "
            "attempts = :att, errors = list_append(if_not_exists(errors, :empty), :err) "
            "REMOVE claim_after, next_attempt_at, lease_token, #e",
            {
                "st": "failed",
                "gsi": gsi_key(tenant, TaskStatus.FAILED),
                "now": now_ms,
                "att": attempt,
                "ttl": (now_ms + self._retention_ms) // 1000,
                "empty": [],
                "err": [entry],
            },
            {"#e": "error"},
            recorded=True,
            entry=entry,
            cancellable=True,
        )

    def release(self, task_id: str, tenant: str, token: str) -> bool:
        """Give a claimed task back unrun (graceful shutdown): the attempt does not count."""
        return self._fenced_update(
            task_id,
            token,
            "SET #s = :st, attempts = attempts - :one, claim_after = :zero REMOVE lease_token",
            {"st": "queued", "one": 1, "zero": 0},
            recorded=True,
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
            claimed.task.id, claimed.token, expression, values, recorded=True, running_only=True
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
            recorded=True,
        )


def _cancel_pending(item: dict[str, Any], token: str) -> bool:
    """Does `item` hold a cancel request for the running attempt of lease `token`?"""
    return (
        item.get("lease_token") == token
        and item.get("status") == "running"
        and "cancel_requested_at" in item
    )
