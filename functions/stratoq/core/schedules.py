"""Recurring tasks: EventBridge schedule expressions, fire times, and the rules' input.

Expressions are EventBridge's: `cron(min hour day-of-month month day-of-week year)` and
`rate(N minute|minutes|hour|hours|day|days)`, in UTC. They are validated the way
EventBridge validates them, then translated to croniter's dialect, which computes the
fire times (day-of-week 1-7 = SUN-SAT becomes 0-6, `?` becomes `*`, `5L` becomes `L4`,
the year becomes croniter's seventh field). The one thing croniter lacks, `LW` (the last
weekday of the month), is croniter's `L` moved back from a weekend to the Friday.

A schedule is an EventBridge rule plus one target, the scheduler function. The target's
input carries the task request (base64 JSON, so no character of the payload can be
taken for an input-transformer placeholder) and the fire time (`<time>`). Reading and
writing the rules themselves is `stratoq.adapters.rules`; this module only computes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field

from stratoq.core.clock import Timestamp
from stratoq.core.errors import ExpressionError as ExpressionError  # importable from here
from stratoq.core.errors import InvalidRequestError
from stratoq.core.models import TaskRequest

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
SCHEDULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
# EventBridge's own limit on an input template.
MAX_TEMPLATE_CHARS = 8192


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    specials: str  # wildcards beyond digits, `,` and `-`
    names: tuple[str, ...] = ()


_FIELDS = (
    _Field("minutes", 0, 59, "*/"),
    _Field("hours", 0, 23, "*/"),
    _Field("day-of-month", 1, 31, "*?/LW"),
    _Field("month", 1, 12, "*/", tuple(_MONTHS)),
    _Field("day-of-week", 1, 7, "*?L#", tuple(_DAYS)),
    _Field("year", 1970, 2199, "*/"),
)


def _number(token: str, f: _Field) -> int:
    upper = token.upper()
    if upper in f.names:
        return f.names.index(upper) + f.low
    if not token.isdigit():
        raise ExpressionError(f"{f.name} field: {token!r} is not a number or name")
    value = int(token)
    if not f.low <= value <= f.high:
        raise ExpressionError(f"{f.name} field: {value} is outside {f.low}-{f.high}")
    return value


def _check_field(value: str, f: _Field) -> None:
    """EventBridge's rules for one cron field (wildcards allowed where, value ranges)."""
    if value in ("*", "?"):
        if value == "?" and "?" not in f.specials:
            raise ExpressionError(f"{f.name} field: '?' is only allowed in day fields")
        return
    for part in value.split(","):
        if not part:
            raise ExpressionError(f"{f.name} field: empty list item in {value!r}")
        base, slash, step = part.partition("/")
        if slash:
            if "/" not in f.specials:
                raise ExpressionError(f"{f.name} field: '/' is not allowed here")
            if not step.isdigit() or int(step) == 0:
                raise ExpressionError(f"{f.name} field: step {step!r} must be a positive number")
            if base == "*":
                continue
        if f.name == "day-of-month" and base in ("L", "LW"):
            continue
        if f.name == "day-of-month" and base.endswith("W"):
            if "," in value or slash:
                raise ExpressionError("day-of-month field: W takes a single day, e.g. 15W")
            _number(base[:-1], f)
            continue
        if f.name == "day-of-week" and base == "L":
            continue
        if f.name == "day-of-week" and base.endswith("L"):
            _number(base[:-1], f)
            continue
        if f.name == "day-of-week" and "#" in base:
            day, _, nth = base.partition("#")
            _number(day, f)
            if nth not in {"1", "2", "3", "4", "5"}:
                raise ExpressionError("day-of-week field: the n in day#n must be 1-5")
            continue
        lo, dash, hi = base.partition("-")
        first = _number(lo, f)
        if dash:
            last = _number(hi, f)
            if f.name != "day-of-week" and last < first:
                raise ExpressionError(f"{f.name} field: range {base} runs backwards")


def _dow_to_croniter(value: str) -> str:
    """EventBridge day-of-week (1-7 = SUN-SAT) to croniter's (0-6)."""

    def day(token: str) -> str:
        return token if not token.isdigit() else str(int(token) - 1)

    if value in ("*", "?"):
        return "*"
    out = []
    for part in value.split(","):
        if part == "L":
            out.append("6")  # EventBridge: L alone is the last day of the week, Saturday
        elif part.endswith("L"):
            out.append(f"L{day(part[:-1])}")
        elif "#" in part:
            d, _, nth = part.partition("#")
            out.append(f"{day(d)}#{nth}")
        else:
            lo, dash, hi = part.partition("-")
            out.append(day(lo) + (f"-{day(hi)}" if dash else ""))
    return ",".join(out)


@dataclass(frozen=True)
class Expression:
    """A validated EventBridge schedule expression."""

    text: str
    rate_seconds: int | None = None
    cron: str | None = None  # croniter dialect, 7 fields (seconds pinned to 0)
    last_weekday: bool = False  # LW

    def next_runs(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next `count` fire times strictly after `after` (UTC)."""
        out: list[datetime] = []
        t = after
        while len(out) < count:
            nxt = self.next_after(t)
            if nxt is None:
                break
            out.append(nxt)
            t = nxt
        return out

    def next_after(self, after: datetime) -> datetime | None:
        after = after.astimezone(UTC)
        if self.rate_seconds is not None:
            # Locally, rates are aligned to the epoch so every clock computes the same
            # times (EventBridge aligns them to the rule's creation; see docs/schedules.md).
            period = self.rate_seconds
            n = int(after.timestamp() // period) + 1
            return datetime.fromtimestamp(n * period, tz=UTC)
        assert self.cron is not None
        if self.last_weekday:
            return self._next_last_weekday(after)
        try:
            nxt: datetime = croniter(self.cron, after).get_next(datetime)
            return nxt
        except Exception:
            return None  # past the last year the expression allows

    def _next_last_weekday(self, after: datetime) -> datetime | None:
        # croniter's L gives each month's last day; a weekend day moves back to Friday,
        # so start a few days early to catch a shifted date that is still ahead.
        assert self.cron is not None
        it = croniter(self.cron, after - timedelta(days=3))
        for _ in range(30):
            try:
                last_day: datetime = it.get_next(datetime)
            except Exception:
                return None
            shift = {5: 1, 6: 2}.get(last_day.weekday(), 0)
            candidate = last_day - timedelta(days=shift)
            if candidate > after:
                return candidate
        return None

    def prev_at_or_before(self, moment: datetime) -> datetime | None:
        """The latest fire time at or before `moment` (used when no fire time is given)."""
        moment = moment.astimezone(UTC)
        if self.rate_seconds is not None:
            period = self.rate_seconds
            return datetime.fromtimestamp(int(moment.timestamp() // period) * period, tz=UTC)
        assert self.cron is not None
        # LW moves a fire up to 2 days back, so look from a little later for it.
        ahead = timedelta(days=3 if self.last_weekday else 0, seconds=1)
        it = croniter(self.cron, moment + ahead)
        for _ in range(40):
            try:
                prev: datetime = it.get_prev(datetime)
            except Exception:
                return None
            if self.last_weekday:
                prev -= timedelta(days={5: 1, 6: 2}.get(prev.weekday(), 0))
            if prev <= moment:
                return prev
        return None


def parse(text: str) -> Expression:
    """Validate an EventBridge schedule expression; raises ExpressionError saying why."""
    if not isinstance(text, str) or text != text.strip():
        raise ExpressionError("expression must be rate(...) or cron(...) without extra spaces")
    m = _RATE.match(text)
    if m:
        value, unit = int(m.group(1)), m.group(2)
        if value <= 0:
            raise ExpressionError("rate value must be a positive whole number")
        if (value == 1) != (not unit.endswith("s")):
            raise ExpressionError(
                f"rate({value} {unit}): the unit must be singular for 1 and plural otherwise"
            )
        return Expression(text, rate_seconds=value * _UNIT_SECONDS[unit.rstrip("s")])
    if text.startswith("rate("):
        raise ExpressionError(
            "rate expressions look like rate(5 minutes): a whole number, then minute(s), "
            "hour(s) or day(s)"
        )
    m = _CRON.match(text)
    if not m:
        raise ExpressionError("expression must be rate(value unit) or cron(fields)")
    fields = m.group(1).split()
    if len(fields) != 6:
        raise ExpressionError(
            f"cron expressions have 6 fields (minutes hours day-of-month month day-of-week "
            f"year), got {len(fields)}"
        )
    for value, f in zip(fields, _FIELDS, strict=True):
        _check_field(value, f)
    dom, dow = fields[2], fields[4]
    if (dom == "?") == (dow == "?"):
        raise ExpressionError(
            "exactly one of day-of-month and day-of-week must be '?' (EventBridge cannot "
            "combine them)"
        )
    minute, hour, _, month, _, year = fields
    last_weekday = dom == "LW"
    cron_dom = "L" if last_weekday else ("*" if dom == "?" else dom)
    cron = " ".join(
        [minute, hour, cron_dom, month.upper(), _dow_to_croniter(dow.upper()), "0", year]
    )
    if not croniter.is_valid(cron):
        raise ExpressionError(f"cron expression {text!r} is not valid")
    return Expression(text, cron=cron, last_weekday=last_weekday)


# ---------------------------------------------------------------- schedules
class ScheduleSpec(BaseModel):
    """What `PUT /v1/schedules/{name}` takes."""

    model_config = ConfigDict(extra="forbid")

    expression: str = Field(examples=["rate(5 minutes)", "cron(0 12 * * ? *)"])
    task: TaskRequest
    enabled: bool = True


class Schedule(ScheduleSpec):
    name: str
    next_runs: list[Timestamp] = Field(default_factory=list)


def rule_name(prefix: str, tenant: str, name: str) -> str:
    """EventBridge rule name: prefix + a short tenant hash + the schedule name (<= 64)."""
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"{prefix}{digest}-{name}"


def encode_task(task: TaskRequest) -> str:
    return base64.b64encode(task.model_dump_json(exclude_none=True).encode()).decode()


def decode_task(blob: str) -> TaskRequest:
    return TaskRequest.model_validate_json(base64.b64decode(blob))


def target_input(tenant: str, name: str, expression: str, task: TaskRequest) -> dict[str, Any]:
    """The input transformer of a schedule's target (the fire time is `<time>`)."""
    body = {"schedule": name, "tenant": tenant, "expression": expression}
    head = json.dumps(body, separators=(",", ":"))[:-1]
    template = f'{head},"time":<time>,"task_b64":"{encode_task(task)}"}}'
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidRequestError(
            f"the schedule's task is too large for an EventBridge target "
            f"({len(template)} of {MAX_TEMPLATE_CHARS} characters); keep its payload small"
        )
    return {"InputPathsMap": {"time": "$.time"}, "InputTemplate": template}


# ------------------------------------------------------------------ firing
@dataclass(frozen=True)
class Fire:
    """One fire of a schedule, as the scheduler function receives it."""

    schedule: str
    tenant: str
    task: TaskRequest
    time: datetime

    @property
    def idempotency_key(self) -> str:
        # A double fire (two clocks, EventBridge's at-least-once delivery) maps to one
        # key, so it makes one task.
        return f"schedule:{self.schedule}:{self.time.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def request(self) -> TaskRequest:
        return self.task.model_copy(update={"idempotency_key": self.idempotency_key})


def fire_from_input(event: dict[str, Any], now: datetime) -> Fire:
    """Read the scheduler function's input: our target's transformed input, or a
    constant Input (static schedules in template.yaml, which have no fire time)."""
    if "task_b64" in event:
        task = decode_task(event["task_b64"])
    elif "task" in event:
        task = TaskRequest.model_validate(event["task"])
    else:
        raise InvalidRequestError("scheduler input has neither task nor task_b64")
    name = str(event.get("schedule") or "")
    if not re.match(SCHEDULE_NAME, name):
        raise InvalidRequestError(f"scheduler input: schedule name {name!r} is not valid")
    when: datetime | None = None
    if isinstance(event.get("time"), str):
        when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    elif isinstance(event.get("expression"), str):
        when = parse(event["expression"]).prev_at_or_before(now + timedelta(seconds=5))
    if when is None:
        when = now.replace(second=0, microsecond=0)  # one task per schedule per minute
    return Fire(name, str(event.get("tenant") or "default"), task, when.astimezone(UTC))
