"""Routes of `/v1/schedules`: recurring tasks as EventBridge rules (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from stratoq.api.common import Caller, answer, check_name, check_payload
from stratoq.api.contract import Deleted, Schedule, ScheduleList, ScheduleSpec, Task, responses
from stratoq.core.errors import UnknownQueueError
from stratoq.core.models import utcnow
from stratoq.core.schedules import SCHEDULE_NAME, Fire
from stratoq.services.schedules import put_schedule as put_and_catch_up

if TYPE_CHECKING:
    from stratoq.services.app import Services


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the schedule routes to `app`, answering from `services`."""

    @app.get("/v1/schedules", responses=responses({200: ("the schedules", ScheduleList)}))
    def list_schedules() -> Response[str]:
        """The caller's schedules (admin)."""
        tenant = caller("admin")
        return answer(200, ScheduleList(schedules=services.schedules.list_schedules(tenant)))

    @app.get("/v1/schedules/<name>", responses=responses({200: ("the schedule", Schedule)}, 404))
    def get_schedule(name: Annotated[str, Path(pattern=SCHEDULE_NAME)]) -> Response[str]:
        """A schedule with `next_runs`, its next 5 fire times in UTC, and `next_runs_local`,
        the same in its time zone with the offset (admin)."""
        tenant = caller("admin")
        return answer(200, services.schedules.get(tenant, name))

    @app.put(
        "/v1/schedules/<name>",
        responses=responses(
            {201: ("created", Schedule), 200: ("replaced", Schedule)}, 400, 413, 503
        ),
    )
    def put_schedule(
        name: Annotated[str, Path(pattern=SCHEDULE_NAME)], spec: ScheduleSpec
    ) -> Response[str]:
        """Create (201) or replace (200) a schedule: an EventBridge rule and its target.

        Enabling a disabled schedule whose `missed` is `run_once` enqueues one task if a
        fire time passed while it was disabled (`caught_up_task_id`).
        """
        tenant = caller("admin")
        check_payload(spec.task, "task.payload")
        check_name(spec.task, services, "task.name")
        if spec.task.queue not in services.transport.queue_names:
            raise UnknownQueueError(f"unknown queue {spec.task.queue!r}")
        schedule, created = put_and_catch_up(
            services.schedules, services.enqueuer, tenant, name, spec
        )
        return answer(201 if created else 200, schedule)

    @app.delete("/v1/schedules/<name>", responses=responses({200: ("deleted", Deleted)}, 404))
    def delete_schedule(name: Annotated[str, Path(pattern=SCHEDULE_NAME)]) -> Response[str]:
        tenant = caller("admin")
        services.schedules.delete(tenant, name)
        return answer(200, Deleted(name=name, deleted=True))

    @app.post(
        "/v1/schedules/<name>/trigger",
        responses=responses({202: ("enqueued", Task)}, 404, 503),
    )
    def trigger_schedule(name: Annotated[str, Path(pattern=SCHEDULE_NAME)]) -> Response[str]:
        """Fire a schedule now, once, outside its expression (admin)."""
        tenant = caller("admin")
        schedule = services.schedules.get(tenant, name)
        fire = Fire(name, tenant, schedule.task, utcnow())
        result = services.enqueuer.enqueue(fire.request(), tenant)
        return answer(202, result.task)
