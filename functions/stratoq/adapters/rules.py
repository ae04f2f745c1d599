"""Schedules stored as EventBridge rules (`stratoq.core.schedules` computes; this talks).

A schedule is the rule `rule_name(prefix, tenant, name)` (its expression, ENABLED or
DISABLED, a description naming tenant and schedule) plus one target, `scheduler`: the
scheduler function, with the input transformer `target_input` builds (the task request
travels in it as base64 JSON). Reading a schedule back decodes that task from the
target; a rule under our prefix without such a target is not a schedule.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stratoq.core.errors import InvalidRequestError, NotFoundError
from stratoq.core.schedules import (
    SCHEDULE_NAME,
    Expression,
    Schedule,
    ScheduleSpec,
    decode_task,
    parse,
    rule_name,
    target_input,
)

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient


class ScheduleStore:
    """Schedules as EventBridge rules whose single target is the scheduler function."""

    def __init__(self, client: EventBridgeClient, prefix: str, target_arn: str) -> None:
        self._events = client
        self.prefix = prefix
        self.target_arn = target_arn

    def put(self, tenant: str, name: str, spec: ScheduleSpec) -> tuple[Schedule, bool]:
        """Create or replace a schedule. Returns (schedule, created)."""
        if not re.match(SCHEDULE_NAME, name):
            raise InvalidRequestError(f"schedule name {name!r} must match {SCHEDULE_NAME}")
        expr = parse(spec.expression)
        rule = rule_name(self.prefix, tenant, name)
        if len(rule) > 64:
            raise InvalidRequestError(
                f"schedule name {name!r} is too long for this deployment's rule prefix "
                f"(at most {64 - len(rule) + len(name)} characters)"
            )
        created = self._describe(rule) is None
        transformer = target_input(tenant, name, spec.expression, spec.task)
        self._events.put_rule(
            Name=rule,
            ScheduleExpression=spec.expression,
            State="ENABLED" if spec.enabled else "DISABLED",
            Description=json.dumps({"stratoq": 1, "tenant": tenant, "name": name}),
        )
        target: Any = {"Id": "scheduler", "Arn": self.target_arn, "InputTransformer": transformer}
        self._events.put_targets(Rule=rule, Targets=[target])
        return self._schedule(name, spec, expr), created

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
        if not mine:
            raise NotFoundError(f"no schedule {name}")
        blob = re.search(
            r'"task_b64":"([A-Za-z0-9+/=]*)"', mine[0]["InputTransformer"]["InputTemplate"]
        )
        if blob is None:
            raise NotFoundError(f"no schedule {name}")
        spec = ScheduleSpec(
            expression=rule["ScheduleExpression"],
            task=decode_task(blob.group(1)),
            enabled=rule.get("State") == "ENABLED",
        )
        return self._schedule(name, spec, parse(spec.expression))

    @staticmethod
    def _schedule(name: str, spec: ScheduleSpec, expr: Expression) -> Schedule:
        runs = expr.next_runs(datetime.now(UTC), 5) if spec.enabled else []
        return Schedule(name=name, next_runs=runs, **spec.model_dump())
