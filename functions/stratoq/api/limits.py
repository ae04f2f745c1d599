"""Routes of the operator's concurrency and rate limits on a queue or a task name.

Such a limit counts every tenant's tasks (a queue, and a task name's handler, are the
deployment's), so only the operator tenant's admin keys set or lift one; any key with
`tasks:read` may list them. Workers see a change within their cache's TTL
(`stratoq.core.limits.TtlCache`). A task's own limits (`concurrency_key`,
`max_concurrency`, `rate_limit`, `rate_limit_key`) are fields of its request instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel

from stratoq.adapters.limits import Kind
from stratoq.api.common import Caller, answer
from stratoq.api.contract import LimitEntry, LimitList, LimitsRemoved, LimitsRequest, responses
from stratoq.core.clock import now_ms
from stratoq.core.errors import ForbiddenError, NotFoundError
from stratoq.core.limits import Limits
from stratoq.core.models import QUEUE_PATTERN, TASK_NAME_PATTERN

if TYPE_CHECKING:
    from stratoq.services.app import Services

_SET: dict[int, tuple[str, type[BaseModel]]] = {200: ("the limits now", LimitEntry)}
_REMOVED: dict[int, tuple[str, type[BaseModel]]] = {200: ("whether it had any", LimitsRemoved)}


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the limit routes to `app`, answering from `services`."""

    def operator(tenant: str) -> str:
        if not caller.is_operator(tenant):
            raise ForbiddenError("only the operator tenant's admin keys may set or lift limits")
        return tenant

    def known_queue(queue: str) -> str:
        if queue not in services.transport.queue_names:
            raise NotFoundError(f"no queue {queue!r}")
        return queue

    def put(kind: Kind, name: str, body: LimitsRequest, by: str) -> Response[str]:
        limits = Limits(body.max_concurrency, body.rate_limit)
        services.limit_store.set(kind, name, limits, by, now_ms())
        return answer(200, LimitEntry(kind=kind, name=name, **vars(limits)))

    def remove(kind: Kind, name: str) -> Response[str]:
        removed = services.limit_store.remove(kind, name)
        return answer(200, LimitsRemoved(kind=kind, name=name, removed=removed))

    @app.get("/v1/limits", responses=responses({200: ("every operator limit", LimitList)}))
    def list_limits() -> Response[str]:
        """The operator's limits on queues and task names."""
        caller("tasks:read")
        state = services.limit_store.read(consistent=True)
        entries = [
            LimitEntry(kind=kind, name=name, **vars(limits))
            for kind, table in (("queue", state.queues), ("task_name", state.task_names))
            for name, limits in sorted(table.items())
        ]
        return answer(200, LimitList(limits=entries))

    @app.put("/v1/queues/<queue>/limits", responses=responses(_SET, 400, 404))
    def limit_queue(
        queue: Annotated[str, Path(pattern=QUEUE_PATTERN)],
        body: LimitsRequest,
    ) -> Response[str]:
        """Limit how many of a queue's tasks (every tenant's) run at once or start per
        period; replaces the queue's limits."""
        # The 403 before the 404: other keys learn no queue names.
        by = operator(caller("admin"))
        return put("queue", known_queue(queue), body, by)

    @app.delete("/v1/queues/<queue>/limits", responses=responses(_REMOVED, 400, 404))
    def unlimit_queue(queue: Annotated[str, Path(pattern=QUEUE_PATTERN)]) -> Response[str]:
        """Lift a queue's limits."""
        operator(caller("admin"))
        return remove("queue", known_queue(queue))

    # Any well-formed name, registered or not (as for pauses).
    @app.put("/v1/tasks/names/<name>/limits", responses=responses(_SET, 400))
    def limit_name(
        name: Annotated[str, Path(pattern=TASK_NAME_PATTERN)],
        body: LimitsRequest,
    ) -> Response[str]:
        """Limit how many tasks of a name (every tenant's, on every queue) run at once or
        start per period; replaces the name's limits."""
        by = operator(caller("admin"))
        return put("task_name", name, body, by)

    @app.delete("/v1/tasks/names/<name>/limits", responses=responses(_REMOVED, 400))
    def unlimit_name(name: Annotated[str, Path(pattern=TASK_NAME_PATTERN)]) -> Response[str]:
        """Lift a task name's limits."""
        operator(caller("admin"))
        return remove("task_name", name)
