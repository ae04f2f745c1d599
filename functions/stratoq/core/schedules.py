"""Recurring tasks: the schedule models, the rules' input, firing and missed fires.

Expressions and their fire times (in a time zone) are `stratoq.core.expressions`,
re-exported here. A schedule is an EventBridge rule plus one target, the scheduler
function. The target's input carries the task request (base64 JSON, so no character of
the payload can be taken for an input-transformer placeholder), the schedule's options
(expression, time zone, jitter, missed-fire policy) and the fire time (`<time>`).
Reading and writing the rules themselves is `stratoq.adapters.rules`; this module only
computes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratoq.core.clock import Timestamp
from stratoq.core.errors import ExpressionError as ExpressionError  # importable from here
from stratoq.core.errors import InvalidRequestError
from stratoq.core.expressions import Expression as Expression
from stratoq.core.expressions import is_utc
from stratoq.core.expressions import load_zone as load_zone
from stratoq.core.expressions import parse as parse
from stratoq.core.models import MAX_DELAY_SECONDS, TaskRequest

SCHEDULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
# EventBridge's own limit on an input template.
MAX_TEMPLATE_CHARS = 8192
MAX_JITTER_SECONDS = 3600
MISSED_POLICIES = ("skip", "run_once")


# ---------------------------------------------------------------- schedules
class ScheduleSpec(BaseModel):
    """What `PUT /v1/schedules/{name}` takes.

    `timezone`, `jitter_seconds` and `missed` are checked by `check_spec` (a 400 naming
    the field), not by the model, so a wrong value reads as a sentence.
    """

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(examples=["rate(5 minutes)", "cron(0 12 * * ? *)"])
    task: TaskRequest
    enabled: bool = True
    timezone: str = Field(
        default="UTC",
        description="IANA time zone the cron expression is read in (rates ignore it)",
        examples=["Europe/Berlin"],
    )
    jitter_seconds: int = Field(
        default=0, description="delay each fire by a random 0..jitter_seconds (0-3600)"
    )
    missed: str = Field(
        default="skip",
        description=(
            "fire times missed while the schedule was disabled: skip them, or run_once "
            "(one task when it is enabled again)"
        ),
        examples=["skip", "run_once"],
    )


class Schedule(ScheduleSpec):
    name: str
    next_runs: list[Timestamp] = Field(default_factory=list)
    next_runs_local: list[str] = Field(
        default_factory=list,
        description="next_runs in the schedule's time zone, with its UTC offset",
    )
    disabled_at: Timestamp | None = None
    caught_up_task_id: str | None = Field(
        default=None,
        description="the task a PUT enqueued for a fire time missed while disabled (run_once)",
    )


def check_spec(spec: ScheduleSpec) -> tuple[Expression, tzinfo]:
    """Validate a schedule's expression and options; its parsed expression and zone."""
    expr = parse(spec.expression)
    zone = load_zone(spec.timezone)
    if not 0 <= spec.jitter_seconds <= MAX_JITTER_SECONDS:
        raise InvalidRequestError(
            f"jitter_seconds must be between 0 and {MAX_JITTER_SECONDS}, got {spec.jitter_seconds}",
            field="jitter_seconds",
        )
    if spec.missed not in MISSED_POLICIES:
        raise InvalidRequestError(
            f"missed must be skip or run_once, got {spec.missed!r}", field="missed"
        )
    for field in ("debounce_key", "debounce_seconds"):
        if getattr(spec.task, field) is not None:
            # The scheduler's role may not update the tasks table (the debounce item),
            # and one task per fire time has nothing to debounce.
            raise InvalidRequestError(
                f"task.{field}: a schedule's task cannot be debounced", field=f"task.{field}"
            )
    return expr, zone


def show(
    name: str, spec: ScheduleSpec, now: datetime, disabled_at: datetime | None = None
) -> Schedule:
    """The schedule as the API shows it: its next 5 fire times in UTC and in its zone."""
    expr, zone = check_spec(spec)
    runs = expr.next_runs(now, 5, zone) if spec.enabled else []
    local = [t.astimezone(zone).isoformat(timespec="seconds") for t in runs]
    return Schedule(
        name=name,
        next_runs=runs,
        next_runs_local=local,
        disabled_at=None if spec.enabled else disabled_at,
        **spec.model_dump(),
    )


def missed_fire(
    expr: Expression,
    zone: tzinfo,
    policy: str,
    disabled_at: datetime | None,
    now: datetime,
) -> datetime | None:
    """The fire time to catch up on when a schedule disabled at `disabled_at` is enabled
    at `now`: under run_once the latest fire time missed in between, else None."""
    if policy != "run_once" or disabled_at is None:
        return None
    last = expr.prev_at_or_before(now, zone)
    return last if last is not None and last > disabled_at else None


def jitter_delay(tenant: str, schedule: str, when: datetime, jitter_seconds: int) -> int:
    """The delay (0..jitter_seconds) of one fire: random-looking, but the same for every
    delivery of that fire, so a double fire asks for one due time."""
    if jitter_seconds <= 0:
        return 0
    seed = f"{tenant}\n{schedule}\n{when.astimezone(UTC).isoformat()}".encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") % (jitter_seconds + 1)


def rule_name(prefix: str, tenant: str, name: str) -> str:
    """EventBridge rule name: prefix + a short tenant hash + the schedule name (<= 64)."""
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"{prefix}{digest}-{name}"


def encode_task(task: TaskRequest) -> str:
    return base64.b64encode(task.model_dump_json(exclude_none=True).encode()).decode()


def decode_task(blob: str) -> TaskRequest:
    return TaskRequest.model_validate_json(base64.b64decode(blob))


def target_input(
    tenant: str,
    name: str,
    expression: str,
    task: TaskRequest,
    *,
    timezone: str = "UTC",
    jitter_seconds: int = 0,
    missed: str = "skip",
) -> dict[str, Any]:
    """The input transformer of a schedule's target (the fire time is `<time>`)."""
    body: dict[str, Any] = {"schedule": name, "tenant": tenant, "expression": expression}
    # Written only when set, so a UTC schedule's input stays what it always was.
    if timezone != "UTC":
        body["timezone"] = timezone
    if jitter_seconds:
        body["jitter_seconds"] = jitter_seconds
    if missed != "skip":
        body["missed"] = missed
    head = json.dumps(body, separators=(",", ":"))[:-1]
    template = f'{head},"time":<time>,"task_b64":"{encode_task(task)}"}}'
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidRequestError(
            f"the schedule's task is too large for an EventBridge target "
            f"({len(template)} of {MAX_TEMPLATE_CHARS} characters); keep its payload small"
        )
    return {"InputPathsMap": {"time": "$.time"}, "InputTemplate": template}


def spec_from_template(template: str, enabled: bool) -> ScheduleSpec | None:
    """The schedule `target_input` wrote into `template` (None: not one of ours)."""
    try:
        body = json.loads(template.replace("<time>", "null"))
        task = decode_task(body["task_b64"])
    except (ValueError, KeyError, TypeError):
        return None
    return ScheduleSpec(
        expression=body.get("expression", ""),
        task=task,
        enabled=enabled,
        timezone=body.get("timezone", "UTC"),
        jitter_seconds=body.get("jitter_seconds", 0),
        missed=body.get("missed", "skip"),
    )


# ------------------------------------------------------------------ firing
@dataclass(frozen=True)
class Fire:
    """One fire of a schedule, as the scheduler function receives it."""

    schedule: str
    tenant: str
    task: TaskRequest
    time: datetime
    jitter_seconds: int = 0

    @property
    def idempotency_key(self) -> str:
        # A double fire (two clocks, EventBridge's at-least-once delivery) maps to one
        # key, so it makes one task.
        return f"schedule:{self.schedule}:{self.time.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def request(self) -> TaskRequest:
        """The task to enqueue: the schedule's, keyed by fire time, delayed by jitter."""
        update: dict[str, Any] = {"idempotency_key": self.idempotency_key}
        delay = jitter_delay(self.tenant, self.schedule, self.time, self.jitter_seconds)
        if delay and self.task.run_at is None:
            update["delay_seconds"] = min(MAX_DELAY_SECONDS, (self.task.delay_seconds or 0) + delay)
        return self.task.model_copy(update=update)


def fire_from_input(event: dict[str, Any], now: datetime) -> Fire | None:
    """Read the scheduler function's input: our target's transformed input, or a
    constant Input (static schedules in template.yaml, which have no fire time).

    None: the rule fired at a minute that is not a fire time of the schedule in its
    time zone (a zoned schedule's rule fires at every candidate minute in UTC).
    """
    if "task_b64" in event:
        task = decode_task(event["task_b64"])
    elif "task" in event:
        task = TaskRequest.model_validate(event["task"])
    else:
        raise InvalidRequestError("scheduler input has neither task nor task_b64")
    name = str(event.get("schedule") or "")
    if not re.match(SCHEDULE_NAME, name):
        raise InvalidRequestError(f"scheduler input: schedule name {name!r} is not valid")
    zone = load_zone(str(event.get("timezone") or "UTC"))
    expression = event.get("expression")
    expr = parse(expression) if isinstance(expression, str) else None
    when: datetime | None = None
    if isinstance(event.get("time"), str):
        when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        if expr is not None and expr.cron is not None and not is_utc(zone):
            if not expr.fires_at(when, zone):
                return None
            when = when.replace(second=0, microsecond=0)
    elif expr is not None:
        when = expr.prev_at_or_before(now + timedelta(seconds=5), zone)
    if when is None:
        when = now.replace(second=0, microsecond=0)  # one task per schedule per minute
    jitter = int(event.get("jitter_seconds") or 0)
    return Fire(name, str(event.get("tenant") or "default"), task, when.astimezone(UTC), jitter)
