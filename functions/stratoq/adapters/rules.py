"""Schedules stored as EventBridge rules (`stratoq.core.schedules` computes; this talks).

A schedule is the rule `rule_name(prefix, tenant, name)` (its rule expression, ENABLED
or DISABLED, a JSON description naming tenant and schedule and, while disabled, when it
was disabled) plus one target, `scheduler`: the scheduler function, with the input
transformer `target_input` builds (the schedule's expression and options, and the task
request as base64 JSON). Reading a schedule back decodes them from the target; a rule
under our prefix without such a target is not a schedule.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from stratoq.core.clock import from_ms, to_ms
from stratoq.core.errors import InvalidRequestError, NotFoundError
from stratoq.core.schedules import (
    SCHEDULE_NAME,
    Schedule,
    ScheduleSpec,
    check_spec,
    missed_fire,
    rule_name,
    show,
    spec_from_template,
    target_input,
)

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient


class Put(NamedTuple):
    """What `ScheduleStore.put` did: the schedule, whether it is new, and the fire time
    missed while it was disabled that its `missed: run_once` asks to catch up on."""

    schedule: Schedule
    created: bool
    missed: datetime | None


class ScheduleStore:
    """Schedules as EventBridge rules whose single target is the scheduler function."""

    def __init__(self, client: EventBridgeClient, prefix: str, target_arn: str) -> None:
        self._events = client
        self.prefix = prefix
        self.target_arn = target_arn

    def put(self, tenant: str, name: str, spec: ScheduleSpec, now: datetime | None = None) -> Put:
        """Create or replace a schedule at `now` (the wall clock by default)."""
        now = now or datetime.now(UTC)
        if not re.match(SCHEDULE_NAME, name):
            raise InvalidRequestError(f"schedule name {name!r} must match {SCHEDULE_NAME}")
        expr, zone = check_spec(spec)
        rule = rule_name(self.prefix, tenant, name)
        if len(rule) > 64:
            raise InvalidRequestError(
                f"schedule name {name!r} is too long for this deployment's rule prefix "
                f"(at most {64 - len(rule) + len(name)} characters)"
            )
        previous = self._describe(rule)
        was_disabled = previous is not None and previous.get("State") != "ENABLED"
        since = _disabled_at(previous) if was_disabled else None
        missed = None
        if spec.enabled:
            missed = missed_fire(expr, zone, spec.missed, since, now)
            disabled_at = None
        else:
            # Disabling a disabled schedule keeps the moment it was first switched off.
            disabled_at = since or now
        transformer = target_input(
            tenant,
            name,
            spec.expression,
            spec.task,
            timezone=spec.timezone,
            jitter_seconds=spec.jitter_seconds,
            missed=spec.missed,
        )
        description: dict[str, Any] = {"stratoq": 1, "tenant": tenant, "name": name}
        if disabled_at is not None:
            description["disabled_at"] = to_ms(disabled_at)
        self._events.put_rule(
            Name=rule,
            ScheduleExpression=expr.rule_expression(zone),
            State="ENABLED" if spec.enabled else "DISABLED",
            Description=json.dumps(description),
        )
        target: Any = {"Id": "scheduler", "Arn": self.target_arn, "InputTransformer": transformer}
        self._events.put_targets(Rule=rule, Targets=[target])
        return Put(show(name, spec, now, disabled_at), previous is None, missed)

    def get(self, tenant: str, name: str) -> Schedule:
        rule = rule_name(self.prefix, tenant, name)
        described = self._describe(rule)
        if described is None or not re.match(SCHEDULE_NAME, name):
            raise NotFoundError(f"no schedule {name}")
        return self._from_rule(name, described)

    def list_schedules(self, tenant: str) -> list[Schedule]:
        start = rule_name(self.prefix, tenant, "")
        out: list[Schedule] = []
        kwargs: dict[str, Any] = {"NamePrefix": start}
        while True:
            page = self._events.list_rules(**kwargs)
            for rule in page.get("Rules", []):
                name = rule["Name"][len(start) :]
                try:
                    out.append(self._from_rule(name, dict(rule)))
                except NotFoundError:
                    continue  # a rule without our target: not a schedule
            token = page.get("NextToken")
            if not token:
                return sorted(out, key=lambda s: s.name)
            kwargs["NextToken"] = token

    def delete(self, tenant: str, name: str) -> None:
        rule = rule_name(self.prefix, tenant, name)
        if self._describe(rule) is None:
            raise NotFoundError(f"no schedule {name}")
        self._events.remove_targets(Rule=rule, Ids=["scheduler"])
        self._events.delete_rule(Name=rule)

    def _describe(self, rule: str) -> dict[str, Any] | None:
        try:
            return dict(self._events.describe_rule(Name=rule))
        except self._events.exceptions.ResourceNotFoundException:
            return None

    def _from_rule(self, name: str, rule: dict[str, Any]) -> Schedule:
        targets = self._events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        mine = [t for t in targets if t.get("Id") == "scheduler" and "InputTransformer" in t]
        enabled = rule.get("State") == "ENABLED"
        spec = (
            spec_from_template(mine[0]["InputTransformer"]["InputTemplate"], enabled)
            if mine
            else None
        )
        if spec is None:
            raise NotFoundError(f"no schedule {name}")
        if not spec.expression:
            spec = spec.model_copy(update={"expression": rule["ScheduleExpression"]})
        return show(name, spec, datetime.now(UTC), _disabled_at(rule))


def _disabled_at(rule: dict[str, Any] | None) -> datetime | None:
    """When the rule's schedule was disabled, from its description (None: not recorded,
    e.g. a rule written before schedules kept it)."""
    try:
        value = json.loads((rule or {}).get("Description") or "{}").get("disabled_at")
    except (ValueError, AttributeError):
        return None
    return from_ms(value) if isinstance(value, int) else None
