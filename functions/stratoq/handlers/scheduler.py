"""Lambda target of schedule rules: enqueue the schedule's task for this fire time.

The task goes through the same enqueue path as the API, with an idempotency key derived
from (schedule, fire time): a double fire makes one task.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoq.core.models import utcnow
from stratoq.core.schedules import fire_from_input
from stratoq.observability import metrics
from stratoq.observability.logging import stream_handler
from stratoq.services.enqueue import Enqueuer, services

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())


class _Deps:
    core: Enqueuer | None = None


def reset() -> None:
    _Deps.core = None


@metrics.flush_after
def lambda_handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    if _Deps.core is None:
        _Deps.core = services()
    fire = fire_from_input(event, utcnow())
    result = _Deps.core.enqueue(fire.request(), fire.tenant)
    logger.info(
        "schedule fired",
        extra={
            "schedule": fire.schedule,
            "fire_time": fire.time.isoformat(),
            "task_id": result.task.id,
            "duplicate": not result.created,
        },
    )
    return {"task_id": result.task.id, "created": result.created}
