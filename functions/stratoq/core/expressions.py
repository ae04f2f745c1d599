"""EventBridge schedule expressions: validation, fire times, time zones.

Expressions are EventBridge's: `cron(min hour day-of-month month day-of-week year)` and
`rate(N minute|minutes|hour|hours|day|days)`. They are validated the way EventBridge
validates them, then translated to croniter's dialect, which computes the fire times
(day-of-week 1-7 = SUN-SAT becomes 0-6, `?` becomes `*`, `5L` becomes `L4`, the year
becomes croniter's seventh field). The one thing croniter lacks, `LW` (the last weekday
of the month), is croniter's `L` moved back from a weekend to the Friday.

A cron expression is read in a time zone (UTC unless a schedule names one), as
EventBridge Scheduler's `ScheduleExpressionTimezone` reads it: croniter walks the zone's
wall clock, and each wall time becomes an instant. Daylight-saving changes follow
EventBridge Scheduler: a wall time the clocks skip (spring forward) does not fire, and a
wall time that happens twice (fall back) fires once, at its first occurrence. Rates are
durations and ignore the zone.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

from croniter import croniter

from stratoq.core.errors import ExpressionError, InvalidRequestError

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


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


# Zoned walks skip wall times that do not fire (a spring-forward gap, the second pass of
# a fall-back hour): at most about two hours of minutes in a row.
_MAX_SKIPS = 200


def is_utc(zone: tzinfo) -> bool:
    """Whether `zone` is UTC (fire times are then the expression's own, no wall clock)."""
    return zone is UTC or getattr(zone, "key", None) in ("UTC", "Etc/UTC")


@lru_cache(maxsize=1)
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def load_zone(name: str) -> tzinfo:
    """The IANA time zone `name` ("Europe/Berlin"); a 400 naming `timezone` otherwise."""
    if name == "UTC":
        return UTC
    if name not in _iana_names():
        raise InvalidRequestError(
            f"timezone {name!r} is not an IANA time zone name (e.g. Europe/Berlin, "
            f"America/New_York, UTC)",
            field="timezone",
        )
    return zoneinfo.ZoneInfo(name)


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    """The wall-clock time of `instant` in `zone`, labelled UTC so croniter walks it
    without applying any offset."""
    return instant.astimezone(zone).replace(tzinfo=UTC, fold=0)


def _instant(wall: datetime, zone: tzinfo) -> datetime | None:
    """The instant a wall time in `zone` fires at: None in a spring-forward gap (the wall
    time never happens), the first occurrence in a fall-back hour (fold=0)."""
    naive = wall.replace(tzinfo=None, fold=0)
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return instant


@lru_cache(maxsize=256)
def _minute_shifts(zone: tzinfo) -> frozenset[int]:
    """The minute parts of `zone`'s UTC offsets (0 for most zones; 30 for India, 45 for
    Nepal, both 0 and 30 for Lord Howe Island), sampled monthly over 2000-2060."""
    shifts = set()
    for year in range(2000, 2061):
        for month in range(1, 13):
            offset = datetime(year, month, 15, tzinfo=UTC).astimezone(zone).utcoffset()
            assert offset is not None
            shifts.add(int(offset.total_seconds()) // 60 % 60)
    return frozenset(shifts)


@dataclass(frozen=True)
class Expression:
    """A validated EventBridge schedule expression.

    Every method takes an optional `zone` (UTC by default) in which a cron expression is
    read; times in and out are aware instants (shown in UTC).
    """

    text: str
    rate_seconds: int | None = None
    cron: str | None = None  # croniter dialect, 7 fields (seconds pinned to 0)
    last_weekday: bool = False  # LW

    def next_runs(self, after: datetime, count: int = 5, zone: tzinfo = UTC) -> list[datetime]:
        """The next `count` fire times strictly after `after`."""
        out: list[datetime] = []
        t = after
        while len(out) < count:
            nxt = self.next_after(t, zone)
            if nxt is None:
                break
            out.append(nxt)
            t = nxt
        return out

    def next_after(self, after: datetime, zone: tzinfo = UTC) -> datetime | None:
        """The first fire time strictly after `after` (None: the expression has ended)."""
        after = after.astimezone(UTC)
        if self.rate_seconds is not None or is_utc(zone):
            return self._next_utc(after)
        wall = _wall(after, zone)
        for _ in range(_MAX_SKIPS):
            nxt = self._next_utc(wall)
            if nxt is None:
                return None
            wall = nxt
            instant = _instant(wall, zone)
            # A wall time of the fall-back hour's first pass is earlier than `after` when
            # `after` is in the second pass: not a fire time any more.
            if instant is not None and instant > after:
                return instant
        return None

    def prev_at_or_before(self, moment: datetime, zone: tzinfo = UTC) -> datetime | None:
        """The latest fire time at or before `moment`."""
        moment = moment.astimezone(UTC)
        if self.rate_seconds is not None or is_utc(zone):
            return self._prev_utc(moment)
        wall = _wall(moment, zone)
        for _ in range(_MAX_SKIPS):
            prev = self._prev_utc(wall)
            if prev is None:
                return None
            instant = _instant(prev, zone)
            if instant is not None and instant <= moment:
                return instant
            wall = prev - timedelta(seconds=1)
        return None

    def fires_at(self, moment: datetime, zone: tzinfo = UTC) -> bool:
        """Whether the minute of `moment` is a fire time (in `zone`)."""
        minute = moment.astimezone(UTC).replace(second=0, microsecond=0)
        return self.prev_at_or_before(minute, zone) == minute

    def rule_expression(self, zone: tzinfo = UTC) -> str:
        """The expression of the EventBridge rule that carries this schedule.

        EventBridge rules read cron in UTC only, so a zoned cron schedule becomes a rule
        firing at every UTC minute that can be a fire time in the zone, hourly (the
        minutes shifted by the zone's sub-hour offsets); the scheduler function then
        fires only those that are (`fires_at`). A UTC schedule or a rate is its own rule.
        """
        if self.rate_seconds is not None or is_utc(zone):
            return self.text
        assert self.cron is not None
        field = croniter(self.cron).expanded[0]
        minutes = range(60) if "*" in field else [int(m) for m in field]
        utc_minutes = sorted({(m - s) % 60 for m in minutes for s in _minute_shifts(zone)})
        listed = "*" if len(utc_minutes) == 60 else ",".join(map(str, utc_minutes))
        return f"cron({listed} * * * ? *)"

    def _next_utc(self, after: datetime) -> datetime | None:
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

    def _prev_utc(self, moment: datetime) -> datetime | None:
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
