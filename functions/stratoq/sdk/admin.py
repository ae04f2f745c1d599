"""Queues, pauses, schedules and API keys over the API (`Client` has these methods)."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from stratoq.api.contract import (
    CreatedKey,
    Identity,
    KeyList,
    KeyRecord,
    PauseResult,
    QueueList,
    Schedule,
    ScheduleList,
    Task,
    TaskRequest,
)
from stratoq.sdk.shapes import body_of, dump


class AdminMethods:
    """Mixed into `Client`: queue counts and pauses, schedules, API keys, and who the
    calling key is."""

    def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError

    def queues(self) -> builtins.list[dict[str, Any]]:
        """Message counts per queue and priority, and whether the queue is paused
        (`QueueCounts` as dicts)."""
        return [dump(q) for q in QueueList.model_validate(self._call("GET", "/v1/queues")).queues]

    # ------------------------------------------------------------------ pauses
    def pause_queue(self, queue: str) -> dict[str, Any]:
        """Pause a queue (operator's admin key only): workers hand its tasks back unrun,
        no attempt spent, until `resume_queue`. `{"kind", "name", "paused", "changed"}`;
        `changed` is False if it already was paused."""
        return self._pause(f"/v1/queues/{queue}/pause")

    def resume_queue(self, queue: str) -> dict[str, Any]:
        """Resume a paused queue (operator's admin key only); as `pause_queue`."""
        return self._pause(f"/v1/queues/{queue}/resume")

    def pause_task_name(self, name: str) -> dict[str, Any]:
        """Pause a task name on every queue (operator's admin key only); as `pause_queue`."""
        return self._pause(f"/v1/tasks/names/{name}/pause")

    def resume_task_name(self, name: str) -> dict[str, Any]:
        """Resume a paused task name (operator's admin key only); as `pause_queue`."""
        return self._pause(f"/v1/tasks/names/{name}/resume")

    def paused(self) -> dict[str, builtins.list[str]]:
        """What is paused: `{"queues": [...], "task_names": [...]}`, each sorted."""
        listed = QueueList.model_validate(self._call("GET", "/v1/queues"))
        queues = sorted({q.queue for q in listed.queues if q.paused})
        return {"queues": queues, "task_names": listed.paused_task_names}

    def _pause(self, path: str) -> dict[str, Any]:
        return dump(PauseResult.model_validate(self._call("POST", path)))

    # --------------------------------------------------------------- schedules
    def put_schedule(
        self,
        name: str,
        expression: str,
        task: TaskRequest | dict[str, Any],
        enabled: bool = True,
        *,
        timezone: str = "UTC",
        jitter_seconds: int = 0,
        missed: str = "skip",
    ) -> dict[str, Any]:
        """Create or replace a recurring task (needs admin).

        `timezone` (IANA) is the zone the cron expression is read in; each fire is
        delayed by a random 0..`jitter_seconds`; `missed` ("skip" or "run_once") says
        whether enabling it again runs one task for fire times missed while disabled
        (the answer's `caught_up_task_id`).
        """
        req = task if isinstance(task, TaskRequest) else TaskRequest.model_validate(task)
        body = {
            "expression": expression,
            "task": body_of(req),
            "enabled": enabled,
            "timezone": timezone,
            "jitter_seconds": jitter_seconds,
            "missed": missed,
        }
        return dump(Schedule.model_validate(self._call("PUT", f"/v1/schedules/{name}", body)))

    def get_schedule(self, name: str) -> dict[str, Any]:
        """A schedule (a `Schedule` as a dict), `next_runs` included."""
        return dump(Schedule.model_validate(self._call("GET", f"/v1/schedules/{name}")))

    def list_schedules(self) -> builtins.list[dict[str, Any]]:
        answer = ScheduleList.model_validate(self._call("GET", "/v1/schedules"))
        return [dump(s) for s in answer.schedules]

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/v1/schedules/{name}")

    def trigger_schedule(self, name: str) -> Task:
        return Task.model_validate(self._call("POST", f"/v1/schedules/{name}/trigger"))

    # -------------------------------------------------------------------- keys
    def create_key(self, tenant: str, scopes: Sequence[str], name: str = "") -> dict[str, Any]:
        """Create an API key (needs admin); the answer's `key` is shown only here."""
        body = {"tenant": tenant, "scopes": list(scopes), "name": name}
        return dump(CreatedKey.model_validate(self._call("POST", "/v1/keys", body)))

    def list_keys(self, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        answer = KeyList.model_validate(self._call("GET", "/v1/keys", query={"tenant": tenant}))
        return [dump(k) for k in answer.keys]

    def whoami(self) -> dict[str, Any]:
        """The key's `{"tenant", "scopes", "operator"}` (`GET /v1/whoami`)."""
        return dump(Identity.model_validate(self._call("GET", "/v1/whoami")))

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return dump(KeyRecord.model_validate(self._call("DELETE", f"/v1/keys/{key_id}")))
