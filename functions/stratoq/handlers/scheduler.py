"""Lambda target of schedule rules: enqueue the schedule's task for this fire time.

The task goes through the same enqueue path as the API, with an idempotency key derived
from (schedule, fire time): a double fire makes one task. A schedule in a time zone
other than UTC has a rule firing at every UTC minute that could be a fire time; the
minutes that are not (in the zone, daylight saving included) end here without a task.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoq.core.models import utcnow
from stratoq.core.schedules import fire_from_input
from stratoq.handlers.edge import entry
from stratoq.observability.logging import stream_handler
from stratoq.services.app import Services

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())


class SchedulerFunction:
    """The scheduler function: one rule firing -> one task (deduplicated per fire time)."""

    def __init__(self, services: Services) -> None:
        self.enqueuer = services.enqueuer

    def __call__(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        fire = fire_from_input(event, utcnow())
        if fire is None:
            return {"task_id": None, "created": False}
        result = self.enqueuer.enqueue(fire.request(), fire.tenant)
        logger.info(
            "schedule fired",
            extra={
                "schedule": fire.schedule,
                "fire_time": fire.time.isoformat(),
                "task_id": result.task.id,
                "duplicate": not result.created,
                "due": result.task.scheduled_for.isoformat() if result.task.scheduled_for else None,
            },
        )
        return {"task_id": result.task.id, "created": result.created}


lambda_handler = entry(SchedulerFunction)
