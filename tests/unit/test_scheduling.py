"""EventBridge expressions: validation as EventBridge does it, and fire times."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from stratoq.core.models import TaskRequest
from stratoq.core.schedules import ExpressionError, fire_from_input, parse, target_input


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def runs(expression: str, after: str, n: int = 3) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M") for t in parse(expression).next_runs(at(after), n)]


# Examples from the EventBridge user guide ("Cron expressions" and "Rate expressions").
VALID = [
    "cron(0 10 * * ? *)",
    "cron(15 12 * * ? *)",
    "cron(0 18 ? * MON-FRI *)",
    "cron(0 8 1 * ? *)",
    "cron(0/15 * * * ? *)",
    "cron(0/10 * ? * MON-FRI *)",
    "cron(0/5 8-17 ? * MON-FRI *)",
    "cron(0 9 ? * 2#1 *)",
    "cron(0 12 L * ? *)",
    "cron(0 12 LW * ? *)",
    "cron(0 12 15W * ? *)",
    "cron(0 12 ? * 6L *)",
    "cron(0 0 1 JAN,JUL ? 2030-2035)",
    "rate(1 minute)",
    "rate(5 minutes)",
    "rate(1 hour)",
    "rate(12 hours)",
    "rate(1 day)",
    "rate(7 days)",
]


@pytest.mark.parametrize("expression", VALID)
def test_valid_expressions(expression: str) -> None:
    assert parse(expression).text == expression


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("cron(0 18 * * MON-FRI *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 18 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 18 * * ?)", "6 fields"),
        ("cron(0 18 * * ? * *)", "6 fields"),
        ("cron(60 * * * ? *)", "minutes field: 60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "hours field: 24 is outside 0-23"),
        ("cron(0 0 32 * ? *)", "day-of-month field: 32"),
        ("cron(0 0 ? * 8 *)", "day-of-week field: 8"),
        ("cron(0 0 1 ? ? *)", "'?' is only allowed in day fields"),
        ("cron(0 0 1 13 ? *)", "month field: 13"),
        ("cron(0 0 1 * ? 1969)", "year field: 1969"),
        ("cron(0 0 ? * 2#6 *)", "1-5"),
        ("cron(0 0 ? * */2 *)", "day-of-week"),
        ("cron(0/0 * * * ? *)", "positive"),
        ("cron(garbage)", "6 fields"),
        ("cron(a b c d e f)", "minutes field"),
        ("rate(1 minutes)", "singular for 1"),
        ("rate(5 minute)", "plural otherwise"),
        ("rate(0 minutes)", "positive"),
        ("rate(5 seconds)", "rate expressions look like"),
        ("rate(-1 days)", "rate expressions look like"),
        ("every 5 minutes", "rate(value unit) or cron(fields)"),
        (" rate(5 minutes)", "extra spaces"),
    ],
)
def test_invalid_expressions_say_why(expression: str, why: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(why)):
        parse(expression)


def test_daily_and_weekday_times() -> None:
    assert runs("cron(0 10 * * ? *)", "2024-05-01 10:00") == [
        "2024-05-02 10:00",
        "2024-05-03 10:00",
        "2024-05-04 10:00",
    ]
    # Friday evening: the next weekday runs are Monday and Tuesday.
    assert runs("cron(0 18 ? * MON-FRI *)", "2024-05-03 18:00", 2) == [
        "2024-05-06 18:00",
        "2024-05-07 18:00",
    ]


def test_day_of_week_numbers_are_eventbridges() -> None:
    # EventBridge counts 1 = SUN ... 7 = SAT (croniter counts from 0).
    assert runs("cron(0 18 ? * 2-6 *)", "2024-05-03 18:00", 5) == runs(
        "cron(0 18 ? * MON-FRI *)", "2024-05-03 18:00", 5
    )
    assert runs("cron(0 0 ? * 1 *)", "2024-05-01 00:00", 1) == ["2024-05-05 00:00"]  # Sunday
    assert runs("cron(0 0 ? * 7 *)", "2024-05-01 00:00", 1) == ["2024-05-04 00:00"]  # Saturday


def test_last_day_of_month_across_month_ends_and_a_leap_year() -> None:
    assert runs("cron(0 12 L * ? *)", "2024-01-30 00:00", 4) == [
        "2024-01-31 12:00",
        "2024-02-29 12:00",
        "2024-03-31 12:00",
        "2024-04-30 12:00",
    ]
    assert runs("cron(0 12 L 2 ? *)", "2025-01-01 00:00", 2) == [
        "2025-02-28 12:00",
        "2026-02-28 12:00",
    ]


def test_leap_day() -> None:
    assert runs("cron(0 0 29 2 ? *)", "2024-03-01 00:00", 2) == [
        "2028-02-29 00:00",
        "2032-02-29 00:00",
    ]


def test_nearest_weekday() -> None:
    # 15 June 2024 is a Saturday: the nearest weekday is Friday the 14th.
    assert runs("cron(0 9 15W * ? *)", "2024-06-01 00:00", 2) == [
        "2024-06-14 09:00",
        "2024-07-15 09:00",
    ]
    # 1 June 2024 is a Saturday: 1W never leaves the month, so Monday the 3rd.
    assert runs("cron(0 9 1W * ? *)", "2024-05-31 00:00", 1) == ["2024-06-03 09:00"]


def test_last_weekday_of_month() -> None:
    # March 2024 ends on a Sunday, August 2024 on a Saturday, July 2024 on a Wednesday.
    assert runs("cron(0 17 LW * ? *)", "2024-03-01 00:00", 6) == [
        "2024-03-29 17:00",
        "2024-04-30 17:00",
        "2024-05-31 17:00",
        "2024-06-28 17:00",
        "2024-07-31 17:00",
        "2024-08-30 17:00",
    ]


def test_nth_and_last_day_of_week() -> None:
    assert runs("cron(0 9 ? * 2#1 *)", "2023-12-31 00:00", 3) == [
        "2024-01-01 09:00",
        "2024-02-05 09:00",
        "2024-03-04 09:00",
    ]
    # 6L: the last Friday of the month.
    assert runs("cron(0 9 ? * 6L *)", "2024-06-01 00:00", 2) == [
        "2024-06-28 09:00",
        "2024-07-26 09:00",
    ]


def test_year_field_and_an_expression_that_ends() -> None:
    assert runs("cron(0 0 1 JAN ? 2030)", "2024-01-01 00:00", 3) == ["2030-01-01 00:00"]
    assert parse("cron(0 0 1 JAN ? 2030)").next_after(at("2030-01-02 00:00")) is None


def test_rates_are_epoch_aligned() -> None:
    assert runs("rate(5 minutes)", "2024-05-01 12:03:20", 3) == [
        "2024-05-01 12:05",
        "2024-05-01 12:10",
        "2024-05-01 12:15",
    ]
    assert runs("rate(1 day)", "2024-02-28 13:00", 2) == ["2024-02-29 00:00", "2024-03-01 00:00"]


def test_prev_fire_time() -> None:
    expr = parse("cron(0/15 * * * ? *)")
    assert expr.prev_at_or_before(at("2024-05-01 12:14:59")) == at("2024-05-01 12:00")
    assert expr.prev_at_or_before(at("2024-05-01 12:15:00")) == at("2024-05-01 12:15")
    # 31 August 2024 is a Saturday: the last weekday fire was Friday the 30th.
    lw = parse("cron(0 17 LW * ? *)")
    assert lw.prev_at_or_before(at("2024-09-02 00:00")) == at("2024-08-30 17:00")
    assert lw.prev_at_or_before(at("2024-08-30 18:00")) == at("2024-08-30 17:00")
    assert lw.prev_at_or_before(at("2024-08-30 16:00")) == at("2024-07-31 17:00")


def test_target_input_survives_placeholder_like_payloads() -> None:
    task = TaskRequest(name="echo", payload={"html": "<time> <b>bold</b>", "q": '"'})
    transformer = target_input("t1", "nightly", "rate(1 day)", task)
    assert transformer["InputPathsMap"] == {"time": "$.time"}
    assert transformer["InputTemplate"].count("<time>") == 1
    from stratoq.local.clock import scheduled_event
    from stratoq.local.clock import target_input as deliver

    event = scheduled_event(
        "arn:aws:events:us-east-1:1:rule/r", "us-east-1", at("2024-05-01 00:00")
    )
    rule = {"Name": "r", "Arn": "arn:aws:events:us-east-1:1:rule/r"}
    delivered = deliver({"InputTransformer": transformer}, event, rule)
    assert delivered["time"] == "2024-05-01T00:00:00Z"
    fire = fire_from_input(delivered, at("2024-05-01 00:00:03"))
    assert fire.task == task
    assert fire.tenant == "t1"
    assert fire.idempotency_key == "schedule:nightly:2024-05-01T00:00:00Z"


def test_constant_input_without_time_uses_the_nominal_fire_time() -> None:
    fire = fire_from_input(
        {"schedule": "heartbeat", "expression": "rate(1 hour)", "task": {"name": "echo"}},
        at("2024-05-01 13:00:04"),
    )
    assert fire.time == at("2024-05-01 13:00")
    assert fire.tenant == "default"
