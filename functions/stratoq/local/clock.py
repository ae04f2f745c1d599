"""The local rule clock: fires the emulator's schedule rules like EventBridge does.

It reads rules and targets from the emulator (ListRules, ListTargetsByRule), fires the
enabled ones at their times, and delivers to the scheduler function exactly what
EventBridge would: the target's constant Input, its InputPath selection, its input
transformer applied to the Scheduled Event, or the Scheduled Event itself.

Missed fires are not replayed: a clock starts at "now", as EventBridge does not catch up
on times a rule was disabled or absent. Two clocks on one emulator both fire, and the
scheduler's idempotency key (schedule, fire time) keeps it to one task.
`speed` runs the clock faster than real time, for tests and demos.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from stratoq.core.schedules import ExpressionError, parse
from stratoq.runtime.signals import on_stop_signals

logger = Logger(service="stratoq", child=True)
ACCOUNT = "123456789012"
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")
MAX_FIRES_PER_TICK = 100


def scheduled_event(rule_arn: str, region: str, when: datetime) -> dict[str, Any]:
    """The event EventBridge sends for a scheduled rule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def _path(event: Any, path: str) -> Any:
    """The JSON-path subset EventBridge supports: $.a.b, $.a[0], $."""
    if path == "$":
        return event
    value = event
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path.removeprefix("$.")):
        if part.startswith("["):
            index = int(part[1:-1])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
    return value


def target_input(target: dict[str, Any], event: dict[str, Any], rule: dict[str, Any]) -> Any:
    """What EventBridge hands a target for `event`."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        return _path(event, target["InputPath"])
    transformer = target.get("InputTransformer")
    if not transformer:
        return event
    values = {k: _path(event, p) for k, p in transformer.get("InputPathsMap", {}).items()}
    values.update(
        {
            "aws.events.rule-name": rule["Name"],
            "aws.events.rule-arn": rule["Arn"],
            "aws.events.event.json": event,
            "aws.events.event.ingestion-time": event["time"],
        }
    )
    template: str = transformer["InputTemplate"]
    is_json = template.strip().startswith("{")

    def substitute(m: re.Match[str]) -> str:
        value = values.get(m.group(1))
        quoted = (
            template[m.start() - 1 : m.start()] == '"' and template[m.end() : m.end() + 1] == '"'
        )
        if not is_json or quoted:
            return value if isinstance(value, str) else json.dumps(value)
        return json.dumps(value)

    text = _PLACEHOLDER.sub(substitute, template)
    return json.loads(text) if is_json else text


class RuleClock:
    """Fires due schedule rules whose target is `target_arn` through `deliver`."""

    def __init__(
        self,
        events: Any,
        deliver: Callable[[Any], Any],
        target_arn: str,
        *,
        region: str = "us-east-1",
        speed: float = 1.0,
        tick_seconds: float = 1.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._events = events
        self._deliver = deliver
        self._target = target_arn
        self._region = region
        self._speed = speed
        self._tick = tick_seconds
        self._real_start = time.time()
        self._start = datetime.now(UTC)
        self._cursors: dict[str, datetime] = {}
        self._bad: set[str] = set()
        self._stop = threading.Event()
        self._clock = clock
        self.fired = 0

    def now(self) -> datetime:
        """The clock's time: real time, or faster by `speed` since the clock started."""
        if self._clock is not None:
            return self._clock()
        elapsed = (time.time() - self._real_start) * self._speed
        return datetime.fromtimestamp(self._start.timestamp() + elapsed, tz=UTC)

    def run(self) -> None:
        while not self._stop.wait(self._tick / max(1.0, min(self._speed, 10.0))):
            try:
                self.tick()
            except Exception:
                logger.exception("rule clock tick failed")

    def stop(self) -> None:
        self._stop.set()

    def _rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._events.list_rules(**kwargs)
            rules.extend(page.get("Rules", []))
            if not page.get("NextToken"):
                return rules
            kwargs["NextToken"] = page["NextToken"]

    def tick(self) -> int:
        """Fire everything due since the last tick; returns how many fires happened."""
        now = self.now()
        seen: set[str] = set()
        fired = 0
        for rule in self._rules():
            name, text = rule["Name"], rule.get("ScheduleExpression")
            if not text or rule.get("State") != "ENABLED":
                continue
            seen.add(name)
            try:
                expr = parse(text)
            except ExpressionError as exc:
                if name not in self._bad:
                    logger.warning(
                        "rule has an invalid schedule", extra={"rule": name, "why": str(exc)}
                    )
                    self._bad.add(name)
                continue
            cursor = self._cursors.setdefault(name, now)
            for when in expr.next_runs(cursor, MAX_FIRES_PER_TICK):
                if when > now:
                    break
                self._fire(rule, when)
                self._cursors[name] = when
                fired += 1
        for gone in set(self._cursors) - seen:
            del self._cursors[gone]  # deleted or disabled: re-enabling starts from then
        self.fired += fired
        return fired

    def _fire(self, rule: dict[str, Any], when: datetime) -> None:
        targets = self._events.list_targets_by_rule(Rule=rule["Name"]).get("Targets", [])
        event = scheduled_event(rule["Arn"], self._region, when)
        for target in targets:
            if target.get("Arn") != self._target:
                continue
            try:
                self._deliver(target_input(target, event, rule))
            except Exception:
                logger.exception("scheduled delivery failed", extra={"rule": rule["Name"]})


def serve_clock(settings: Any, speed: float = 1.0) -> int:
    """`stratoq scheduler`: run the rule clock until SIGTERM/SIGINT, firing in-process."""

    from stratoq.handlers.scheduler import SchedulerFunction
    from stratoq.observability.metrics import Metrics
    from stratoq.observability.prometheus import PrometheusRecorder
    from stratoq.services.app import Services

    services = Services(settings, metrics=Metrics([PrometheusRecorder()]))
    fire = SchedulerFunction(services)
    clock = RuleClock(
        services.events,
        lambda event: fire(event, None),
        settings.scheduler_arn,
        region=settings.region,
        speed=speed,
    )
    on_stop_signals(clock.stop)
    logger.info("rule clock started", extra={"target": settings.scheduler_arn})
    clock.run()
    return 0
