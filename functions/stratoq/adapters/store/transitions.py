"""What users do to tasks outside a worker's attempt: cancel one (a running one by a
request its worker acts on), or make a failed or cancelled one runnable again (retry,
retry-failed).

Each is one UpdateItem conditional on the tenant and the statuses the change is allowed
from; a refused change reads the item it was refused on to say why (no such task, or
the status it is in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from stratoq.adapters.store.base import StoreBase
from stratoq.adapters.store.codec import item_to_task, load, vals
from stratoq.core.errors import InvalidStateError, TaskNotFoundError
from stratoq.core.models import RUNNABLE_STATUSES, Task, TaskStatus
from stratoq.core.policy import CancelAction, cancel_action


class _Refused(InvalidStateError):
    """A transition refused by the status the task is in (`status`)."""

    def __init__(self, message: str, status: TaskStatus) -> None:
        super().__init__(message)
        self.status = status


class TaskTransitions(StoreBase):
    """Cancel and requeue, guarded by the task's status."""

    def cancel(self, task_id: str, tenant: str, now_ms: int) -> Task:
        """Cancel a task: one not started (or waiting to retry) ends `cancelled` now; a
        running one gets `cancel_requested_at`, which its worker acts on (it stops the
        attempt and records the task `cancelled`). Raises InvalidStateError for a final
        task, TaskNotFoundError for none (or another tenant's)."""
        # A task can move between the two cases under us (claimed, or released back
        # by a worker shutting down): each refusal says where it went, so try again.
        for _ in range(3):
            try:
                return self._cancel_now(task_id, tenant, now_ms)
            except _Refused as exc:
                if cancel_action(exc.status) is not CancelAction.REQUEST:
                    raise
            try:
                return self._request_cancel(task_id, tenant, now_ms)
            except _Refused as exc:
                if cancel_action(exc.status) is not CancelAction.NOW:
                    raise
        raise InvalidStateError(f"cannot cancel task {task_id}: it keeps changing; try again")

    def _cancel_now(self, task_id: str, tenant: str, now_ms: int) -> Task:
        return self._transition(
            task_id,
            tenant,
            # Guards against cancelling a task a worker already claimed or finished: a
            # claimed one gets a request instead (below), a finished one stays as it is.
            allowed=RUNNABLE_STATUSES,
            expression=(
                "SET #s = :st, finished_at = :now, expires_at = :ttl "
                "REMOVE next_attempt_at, claim_after, #e"
            ),
            values={
                "st": "cancelled",
                "now": now_ms,
                "ttl": (now_ms + self._retention_ms) // 1000,
            },
            verb="cancel",
            names={"#e": "error"},
        )

    def _request_cancel(self, task_id: str, tenant: str, now_ms: int) -> Task:
        return self._transition(
            task_id,
            tenant,
            # Only while it runs: this closes the race with the attempt's outcome. The
            # outcome writes (complete, retry, fail) require no request on the item, so
            # either the outcome lands first (this is refused: the task is final, 409)
            # or the request does (the outcome is refused and the worker records the
            # task cancelled instead): exactly one of them wins. The first request's
            # time stands.
            allowed=frozenset({TaskStatus.RUNNING}),
            expression="SET cancel_requested_at = if_not_exists(cancel_requested_at, :now)",
            values={"now": now_ms},
            verb="cancel",
        )

    def cancel_unstarted(self, task_id: str, tenant: str, now_ms: int, reason: str) -> Task:
        """Cancel a task that has not started (`queued` or `scheduled`), noting `reason`
        in its `errors` (kind `cancelled`, attempt 0): a debounced task superseded by a
        later one. Raises InvalidStateError for any other status (a started task is left
        to finish), TaskNotFoundError for none (or another tenant's)."""
        return self._transition(
            task_id,
            tenant,
            # Guards against cancelling a task that a worker claimed meanwhile: a
            # superseded task that started runs to its end (and its retries, if any).
            allowed=frozenset({TaskStatus.QUEUED, TaskStatus.SCHEDULED}),
            expression=(
                "SET #s = :st, finished_at = :now, expires_at = :ttl, "
                "errors = list_append(if_not_exists(errors, :empty), :err) "
                "REMOVE next_attempt_at, claim_after, #e, waiting_for"
            ),
            values={
                "st": "cancelled",
                "now": now_ms,
                "ttl": (now_ms + self._retention_ms) // 1000,
                "empty": [],
                "err": [{"attempt": 0, "kind": "cancelled", "message": reason, "at": now_ms}],
            },
            verb="cancel",
            names={"#e": "error"},
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
                "REMOVE finished_at, expires_at, next_attempt_at, #e, gsi1pk, "
                "cancel_requested_at"
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
                ExpressionAttributeValues=vals(tenant=tenant, **placeholders, **values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raw: Any = exc.response.get("Item")
            item = load(raw) if raw else None
            if item is None or "name" not in item or item.get("tenant") != tenant:
                raise TaskNotFoundError(f"no task {task_id}") from None
            raise _Refused(
                f"cannot {verb} task {task_id}: it is {item['status']}",
                TaskStatus(item["status"]),
            ) from None
        return item_to_task(load(out["Attributes"]), self.cipher)
