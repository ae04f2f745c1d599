"""The operator's concurrency and rate limits over the API (`Client` has these methods).

A task's own limits are fields of its request instead: `concurrency_key`,
`max_concurrency`, `rate_limit`, `rate_limit_key` (`Client.enqueue(..., **options)`,
`@task(max_concurrency=..., rate_limit=...)`).
"""

from __future__ import annotations

import builtins
from typing import Any

from stratoq.api.contract import LimitEntry, LimitList, LimitsRemoved


class LimitMethods:
    """Mixed into `Client`: limit a queue or a task name for every tenant (the
    operator's admin key only), lift the limits, list them."""

    def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError

    def limit_queue(
        self, queue: str, max_concurrency: int | None = None, rate_limit: str | None = None
    ) -> dict[str, Any]:
        """At most `max_concurrency` of the queue's tasks run at once, and at most
        `rate_limit` ("10/s", "60/m", "1000/h", "5/d") start, counting every tenant's;
        replaces the queue's limits. `{"kind", "name", "max_concurrency", "rate_limit"}`."""
        return self._put(f"/v1/queues/{queue}/limits", max_concurrency, rate_limit)

    def limit_task_name(
        self, name: str, max_concurrency: int | None = None, rate_limit: str | None = None
    ) -> dict[str, Any]:
        """As `limit_queue`, for the tasks of a name on every queue."""
        return self._put(f"/v1/tasks/names/{name}/limits", max_concurrency, rate_limit)

    def unlimit_queue(self, queue: str) -> dict[str, Any]:
        """Lift a queue's limits: `{"kind", "name", "removed"}` (False: it had none)."""
        answer = self._call("DELETE", f"/v1/queues/{queue}/limits")
        return LimitsRemoved.model_validate(answer).model_dump(mode="json")

    def unlimit_task_name(self, name: str) -> dict[str, Any]:
        """Lift a task name's limits; as `unlimit_queue`."""
        answer = self._call("DELETE", f"/v1/tasks/names/{name}/limits")
        return LimitsRemoved.model_validate(answer).model_dump(mode="json")

    def limits(self) -> builtins.list[dict[str, Any]]:
        """Every operator limit, queues first, each sorted by name."""
        listed = LimitList.model_validate(self._call("GET", "/v1/limits"))
        return [entry.model_dump(mode="json") for entry in listed.limits]

    def _put(self, path: str, max_concurrency: int | None, rate: str | None) -> dict[str, Any]:
        body = {"max_concurrency": max_concurrency, "rate_limit": rate}
        answer = self._call("PUT", path, {k: v for k, v in body.items() if v is not None})
        return LimitEntry.model_validate(answer).model_dump(mode="json")
