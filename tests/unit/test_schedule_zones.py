"""Schedules in a time zone, daylight saving, jitter and missed fires: pure math with
explicit instants (no clock is read)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratoq.core.errors import InvalidRequestError
from stratoq.core.models import TaskRequest
from stratoq.core.schedules import (
    Fire,
    ScheduleSpec,
    check_spec,
    fire_from_input,
    jitter_delay,
    load_zone,
    missed_fire,
    parse,
    show,
    target_input,
)
from stratoq.local.clock import scheduled_event
from stratoq.local.clock import target_input as deliver

BERLIN = load_zone("Europe/Berlin")
RULE = {"Name": "r", "Arn": "arn:aws:events:us-east-1:1:rule/r"}


def utc(text: str) -> datetime:
    return (
        datetime.fromisoformat(text).astimezone(UTC)
        if "+" in text
        else (datetime.fromisoformat(text).replace(tzinfo=UTC))
    )


def local(times: list[datetime], zone: Any = BERLIN) -> list[str]:
    return [t.astimezone(zone).isoformat(timespec="minutes") for t in times]


def fired(expression: str, timezone: str, start: str, end: str, jitter: int = 0) -> list[Fire]:
    """What the deployed path does between two instants: the rule (UTC cron) fires at
    each of its times, EventBridge transforms the input, the scheduler decides."""
    zone = load_zone(timezone)
    expr = parse(expression)
    rule = parse(expr.rule_expression(zone))
    task = TaskRequest(name="echo")
    transformer = target_input(
        "t", "job", expression, task, timezone=timezone, jitter_seconds=jitter
    )
    out = []
    when = utc(start)
    while (nxt := rule.next_after(when)) is not None and nxt <= utc(end):
        when = nxt
        event = scheduled_event(RULE["Arn"], "us-east-1", when)
        fire = fire_from_input(deliver({"InputTransformer": transformer}, event, RULE), when)
        if fire is not None:
            out.append(fire)
    return out


def test_a_cron_expression_reads_in_its_zone() -> None:
    runs = parse("cron(0 9 ? * MON-FRI *)").next_runs(utc("2026-01-02 12:00"), 2, BERLIN)
    assert runs == [utc("2026-01-05 08:00"), utc("2026-01-06 08:00")]
    summer = parse("cron(0 9 ? * MON-FRI *)").next_runs(utc("2026-07-01 12:00"), 1, BERLIN)
    assert summer == [utc("2026-07-02 07:00")]  # CEST, UTC+2
    # Day fields are the zone's days too: 00:30 on Monday in Tokyo is Sunday in UTC.
    tokyo = load_zone("Asia/Tokyo")
    assert parse("cron(30 0 ? * MON *)").next_runs(utc("2026-01-01 00:00"), 1, tokyo) == [
        utc("2026-01-04 15:30")
    ]


def test_spring_forward_skips_a_wall_time_that_does_not_exist() -> None:
    # 29 March 2026: Berlin's clocks jump from 02:00 to 03:00; 02:30 never happens.
    runs = parse("cron(30 2 * * ? *)").next_runs(utc("2026-03-27 12:00"), 3, BERLIN)
    assert local(runs) == ["2026-03-28T02:30+01:00", "2026-03-30T02:30+02:00", *local(runs[2:])]
    assert (
        len(fired("cron(30 2 * * ? *)", "Europe/Berlin", "2026-03-28 12:00", "2026-03-29 23:59"))
        == 0
    )
    # Times outside the gap are untouched that day.
    assert local(parse("cron(30 3 * * ? *)").next_runs(utc("2026-03-29 00:00"), 1, BERLIN)) == [
        "2026-03-29T03:30+02:00"
    ]


def test_fall_back_fires_a_repeated_wall_time_once() -> None:
    # 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    fires = fired("cron(30 2 * * ? *)", "Europe/Berlin", "2026-10-24 12:00", "2026-10-25 23:59")
    assert [f.time for f in fires] == [utc("2026-10-25 00:30")]  # the first pass, CEST
    hourly = fired("cron(30 * * * ? *)", "Europe/Berlin", "2026-10-24 23:00", "2026-10-25 03:59")
    assert local([f.time for f in hourly]) == [
        "2026-10-25T01:30+02:00",
        "2026-10-25T02:30+02:00",
        "2026-10-25T03:30+01:00",  # the second 02:30 (CET) does not fire
        "2026-10-25T04:30+01:00",
    ]
    # Computed next runs agree with what the scheduler fires.
    expr = parse("cron(30 * * * ? *)")
    assert expr.next_runs(utc("2026-10-24 23:00"), 4, BERLIN) == [f.time for f in hourly]
    # From inside the second pass, the next fire is 03:30 CET.
    assert expr.next_after(utc("2026-10-25 01:10"), BERLIN) == utc("2026-10-25 02:30")
    assert expr.prev_at_or_before(utc("2026-10-25 01:40"), BERLIN) == utc("2026-10-25 00:30")


@pytest.mark.parametrize(
    ("zone", "expression", "days"),
    [
        ("Europe/Berlin", "cron(15 1-3 * * ? *)", ["2026-03-28", "2026-10-24"]),
        ("America/New_York", "cron(0 1-3 * * ? *)", ["2026-03-07", "2026-10-31"]),
        ("Asia/Kathmandu", "cron(0/20 6 * * ? *)", ["2026-06-01"]),  # UTC+5:45
        # Lord Howe Island shifts by 30 minutes, at 02:00.
        ("Australia/Lord_Howe", "cron(0/15 1-2 * * ? *)", ["2026-04-04", "2026-10-03"]),
    ],
)
def test_the_scheduler_fires_exactly_the_computed_next_runs(
    zone: str, expression: str, days: list[str]
) -> None:
    for day in days:  # three days around each daylight-saving change
        start, end = (
            utc(f"{day} 00:00") - timedelta(hours=14),
            utc(f"{day} 00:00") + timedelta(days=2, hours=14),
        )
        fires = [f.time for f in fired(expression, zone, start.isoformat(), end.isoformat())]
        expected = parse(expression).next_runs(start, 200, load_zone(zone))
        assert fires == [t for t in expected if t <= end], (zone, day)
        assert len(fires) >= 3


def test_the_rule_expression_covers_every_candidate_minute_in_utc() -> None:
    assert parse("cron(30 2 * * ? *)").rule_expression(BERLIN) == "cron(30 * * * ? *)"
    assert parse("cron(0/20 9 * * ? *)").rule_expression(load_zone("Asia/Kolkata")) == (
        "cron(10,30,50 * * * ? *)"
    )
    assert parse("cron(0 9 * * ? *)").rule_expression(load_zone("UTC")) == "cron(0 9 * * ? *)"
    assert parse("rate(5 minutes)").rule_expression(BERLIN) == "rate(5 minutes)"
    assert parse("cron(* 9 * * ? *)").rule_expression(BERLIN) == "cron(* * * * ? *)"


def test_a_static_input_without_a_time_uses_the_zones_nominal_fire_time() -> None:
    fire = fire_from_input(
        {
            "schedule": "daily",
            "expression": "cron(0 9 * * ? *)",
            "timezone": "Europe/Berlin",
            "task": {"name": "echo"},
        },
        utc("2026-07-01 07:00:03"),
    )
    assert fire is not None and fire.time == utc("2026-07-01 07:00")


def test_jitter_delays_each_fire_by_a_stable_random_amount() -> None:
    base = utc("2026-05-01 00:00")
    delays = [jitter_delay("t", "job", base + timedelta(minutes=i), 30) for i in range(200)]
    assert all(0 <= d <= 30 for d in delays)
    assert len(set(delays)) > 20  # spread, not one value
    assert jitter_delay("t", "job", base, 30) == delays[0]  # a double fire agrees
    assert jitter_delay("t", "job", base, 0) == 0
    task = TaskRequest(name="echo")
    request = Fire("job", "t", task, base + timedelta(minutes=3), 30).request()
    assert request.delay_seconds == delays[3] or (delays[3] == 0 and not request.delay_seconds)
    assert request.idempotency_key == "schedule:job:2026-05-01T00:03:00Z"
    fires = fired("rate(1 minute)", "UTC", "2026-05-01 00:00", "2026-05-01 00:09", jitter=30)
    assert {f.request().delay_seconds or 0 for f in fires} <= set(range(31))
    assert len({f.request().delay_seconds for f in fires}) > 1


def test_missed_fire_policy() -> None:
    daily = parse("cron(0 9 * * ? *)")
    off, on = utc("2026-05-01 10:00"), utc("2026-05-03 08:00")
    assert missed_fire(daily, UTC, "run_once", off, on) == utc("2026-05-02 09:00")
    assert missed_fire(daily, UTC, "skip", off, on) is None
    assert missed_fire(daily, UTC, "run_once", off, utc("2026-05-02 08:59")) is None
    assert missed_fire(daily, UTC, "run_once", None, on) is None
    # In the zone: 09:00 Berlin is 07:00 UTC in summer.
    assert missed_fire(daily, BERLIN, "run_once", off, utc("2026-05-02 07:00")) == utc(
        "2026-05-02 07:00"
    )


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"timezone": "../../etc/passwd"}, "timezone", "IANA"),
        ({"jitter_seconds": 3601}, "jitter_seconds", "between 0 and 3600"),
        ({"jitter_seconds": -1}, "jitter_seconds", "between 0 and 3600"),
        ({"missed": "all"}, "missed", "skip or run_once"),
    ],
)
def test_bad_options_name_their_field(options: dict[str, Any], field: str, words: str) -> None:
    spec = ScheduleSpec(expression="cron(0 9 * * ? *)", task=TaskRequest(name="echo"), **options)
    with pytest.raises(InvalidRequestError) as caught:
        check_spec(spec)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_shown_next_runs_carry_the_zone_offset() -> None:
    spec = ScheduleSpec(
        expression="cron(30 2 * * ? *)", task=TaskRequest(name="echo"), timezone="Europe/Berlin"
    )
    shown = show("job", spec, utc("2026-03-27 12:00"))
    assert shown.next_runs_local[:2] == ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"]
    assert shown.next_runs[0] == utc("2026-03-28 01:30")
