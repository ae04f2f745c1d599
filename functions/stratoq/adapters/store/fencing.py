"""Fenced writes of a lease holder: conditioned on its token, and recognised as its own
when botocore retries one whose answer was lost (docs/reliability.md)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from stratoq.adapters.store.base import StoreBase
from stratoq.adapters.store.codec import load, vals
from stratoq.core.ids import new_token


class FencedWrites(StoreBase):
    """The conditional update every write of a lease holder goes through."""

    def _fenced_update(
        self,
        task_id: str,
        token: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        *,
        recorded: bool = False,
        entry: dict[str, Any] | None = None,
        **conditions: bool,
    ) -> bool:
        """True if written, by this call or by an earlier try of it whose answer was lost.

        botocore retries a write whose answer was lost; the retry is refused, as the
        write it repeats already changed the item (spent the token, moved the status).
        `recorded`: the write also stores `done_write`, a value fresh for this call, so
        that the refused retry finds it and knows the write for its own (a second,
        different call of the same holder is still refused). `entry`: the error entry
        the write appends, which identifies it even once a later outcome replaced
        `done_write`."""
        write = new_token()
        if recorded:
            expression = "SET done_write = :write, " + expression.removeprefix("SET ")
            values = {**values, "write": write}
        refused = self._fenced_write(
            task_id, token, expression, values, names, once=recorded, **conditions
        )
        if refused is None:
            return True
        if recorded and refused.get("done_write") == write:
            return True
        fields = ("attempt", "kind", "message", "at")
        return entry is not None and any(
            all(e.get(f) == entry[f] for f in fields) for e in refused.get("errors", [])
        )

    def _fenced_write(
        self,
        task_id: str,
        token: str,
        expression: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
        *,
        running_only: bool = False,
        cancellable: bool = False,
        cancel_required: bool = False,
        once: bool = False,
    ) -> dict[str, Any] | None:
        """None if written; else the item that refused the write ({} if none)."""
        names = {"#s": "status", **(names or {})}
        condition = "lease_token = :tok"
        if running_only:
            # The attempt is over once recorded (the token stays on the item for the
            # record): a late heartbeat or release must not revive a finished task.
            condition += " AND #s = :fenced_running"
            values = {**values, "fenced_running": "running"}
        if cancellable:
            # A cancel request and this attempt's outcome (or renewal) race: the request
            # wins once it is on the item, so the worker records `cancelled` instead
            # (`finish_cancelled`) and a cancel the API accepted is never overwritten by
            # success, a retry or a failure.
            condition += " AND attribute_not_exists(cancel_requested_at)"
        if cancel_required:
            condition += " AND attribute_exists(cancel_requested_at)"
        if once:
            # A retry of this very write (its answer lost) must not apply it twice: an
            # appended error entry would be doubled.
            condition += " AND (attribute_not_exists(done_write) OR done_write <> :write)"
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
                ExpressionAttributeValues=vals(tok=token, **values),
                # The refusing item tells a cancel request, or our own earlier write.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **kwargs,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raw: Any = exc.response.get("Item")
                return load(raw) if raw else {}
            raise
        return None
