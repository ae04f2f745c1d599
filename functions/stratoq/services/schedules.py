"""Putting a schedule, and catching up on a fire time missed while it was disabled.

`ScheduleStore.put` decides (with `core.schedules.missed_fire`) whether enabling a
schedule whose policy is `missed: run_once` missed at least one fire time; this enqueues
that one task, keyed like the fire itself (`schedule:<name>:<fire time>`), so two PUTs
racing to enable it, or a retried PUT, still make one task.
"""

from __future__ import annotations

from datetime import datetime

from stratoq.adapters.rules import ScheduleStore
from stratoq.core.schedules import Fire, Schedule, ScheduleSpec
from stratoq.services.enqueue import Enqueuer


def put_schedule(
    store: ScheduleStore,
    enqueuer: Enqueuer,
    tenant: str,
    name: str,
    spec: ScheduleSpec,
    now: datetime | None = None,
) -> tuple[Schedule, bool]:
    """Create or replace a schedule; (the schedule, whether it is new). Enabling it
    under `missed: run_once` after a missed fire time enqueues one task, whose id the
    answer shows as `caught_up_task_id`."""
    put = store.put(tenant, name, spec, now)
    if put.missed is None:
        return put.schedule, put.created
    fire = Fire(name, tenant, spec.task, put.missed, spec.jitter_seconds)
    result = enqueuer.enqueue(fire.request(), tenant)
    return put.schedule.model_copy(update={"caught_up_task_id": result.task.id}), put.created
