"""Routes that pause and resume a queue or a task name (the operator's admin keys only).

A queue is shared by every tenant, and a task name is the deployment's code, so a pause
is global: it holds every tenant's tasks, and only the operator may set it (403 for
any other key, admin or not). Workers see it within their pause cache's TTL
(`stratoq.core.pauses`) and hand paused tasks back unclaimed: nothing runs, nothing is
lost, no attempt is spent. `GET /v1/queues` shows what is paused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel

from stratoq.adapters.pauses import Kind
from stratoq.api.common import Caller, answer
from stratoq.api.contract import PauseResult, responses
from stratoq.core.clock import now_ms
from stratoq.core.errors import ForbiddenError, NotFoundError
from stratoq.core.models import QUEUE_PATTERN, TASK_NAME_PATTERN

if TYPE_CHECKING:
    from stratoq.services.app import Services

_OK: dict[int, tuple[str, type[BaseModel]]] = {
    200: ("the state now, and whether it changed", PauseResult)
}


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the pause and resume routes to `app`, answering from `services`."""

    def operator(tenant: str) -> str:
        if not caller.is_operator(tenant):
            raise ForbiddenError("only the operator tenant's admin keys may pause or resume")
        return tenant

    def change(kind: Kind, name: str, pause: bool, by: str) -> Response[str]:
        store = services.pause_store
        act = store.pause if pause else store.resume
        changed = act(kind, name, by, now_ms())
        return answer(200, PauseResult(kind=kind, name=name, paused=pause, changed=changed))

    def known_queue(queue: str) -> str:
        # A logical queue: its priority queues follow it.
        if queue not in services.transport.queue_names:
            raise NotFoundError(f"no queue {queue!r}")
        return queue

    @app.post("/v1/queues/<queue>/pause", responses=responses(_OK, 400, 404))
    def pause_queue(queue: Annotated[str, Path(pattern=QUEUE_PATTERN)]) -> Response[str]:
        """Pause a queue: workers hand its tasks back unrun, every tenant's, until resumed."""
        # The 403 before the 404: other keys learn nothing of queue names.
        by = operator(caller("admin"))
        return change("queue", known_queue(queue), True, by)

    @app.post("/v1/queues/<queue>/resume", responses=responses(_OK, 400, 404))
    def resume_queue(queue: Annotated[str, Path(pattern=QUEUE_PATTERN)]) -> Response[str]:
        """Resume a paused queue: its tasks run again within a few seconds."""
        by = operator(caller("admin"))
        return change("queue", known_queue(queue), False, by)

    # Any well-formed name, registered or not: a name may belong to another fleet's
    # workers, or to tasks not deployed yet that must not start when they are.
    @app.post("/v1/tasks/names/<name>/pause", responses=responses(_OK, 400))
    def pause_name(name: Annotated[str, Path(pattern=TASK_NAME_PATTERN)]) -> Response[str]:
        """Pause a task name on every queue: workers hand its tasks back unrun."""
        by = operator(caller("admin"))
        return change("task_name", name, True, by)

    @app.post("/v1/tasks/names/<name>/resume", responses=responses(_OK, 400))
    def resume_name(name: Annotated[str, Path(pattern=TASK_NAME_PATTERN)]) -> Response[str]:
        """Resume a paused task name."""
        by = operator(caller("admin"))
        return change("task_name", name, False, by)
