"""Routes of `/v1/queues`: message counts and pauses, and the dead-letter redrive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from stratoq.adapters.transport import queue_stats
from stratoq.api.common import Caller, answer
from stratoq.api.contract import QueueList, RedriveRequest, RedriveResult, responses
from stratoq.core.errors import ForbiddenError, NotFoundError
from stratoq.core.models import QUEUE_PATTERN
from stratoq.services import dlq

if TYPE_CHECKING:
    from stratoq.services.app import Services


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the queue routes to `app`, answering from `services`."""

    @app.get("/v1/queues", responses=responses({200: ("message counts", QueueList)}))
    def queues() -> Response[str]:
        """Per queue and priority: visible, in flight, delayed and dead-letter message
        counts, and whether the queue is paused; and the paused task names."""
        caller("tasks:read")
        paused = services.pause_store.read(consistent=True)
        rows = [
            {**row, "paused": row["queue"] in paused.queues}
            for row in queue_stats(services.transport)
        ]
        listed = {"queues": rows, "paused_task_names": sorted(paused.task_names)}
        return answer(200, QueueList.model_validate(listed))

    @app.post(
        "/v1/queues/<queue>/redrive",
        responses=responses({200: ("what was moved", RedriveResult)}, 400, 404, 503),
    )
    def redrive_queue(
        queue: Annotated[str, Path(pattern=QUEUE_PATTERN)],
        request: RedriveRequest | None = None,
    ) -> Response[str]:
        """Move a queue's dead-letter messages back to work (operator tenant's admin keys only).

        A DLQ is shared by every tenant, so only the operator may drain it.
        """
        tenant = caller("admin")
        if not caller.is_operator(tenant):
            raise ForbiddenError("only the operator tenant's admin keys may redrive a queue")
        # A logical queue (its priorities follow it).
        if queue not in services.transport.queue_names:
            raise NotFoundError(f"no queue {queue!r}")
        max_messages = (request or RedriveRequest()).max_messages
        report = dlq.redrive(services.enqueuer, queue, max_messages)
        return answer(200, RedriveResult.model_validate(report.as_dict()))
