"""Schedules as EventBridge rules on the emulator, fired by the local rule clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stratoq.adapters import aws
from stratoq.adapters.rules import ScheduleStore
from stratoq.core.errors import NotFoundError
from stratoq.core.models import TaskRequest
from stratoq.core.schedules import (
    ExpressionError,
    Schedule,
    ScheduleSpec,
    jitter_delay,
    rule_name,
)
from stratoq.core.settings import Settings
from stratoq.handlers.edge import entry
from stratoq.handlers.scheduler import SchedulerFunction
from stratoq.local.clock import RuleClock
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from stratoq.services.schedules import put_schedule


class ManualTime:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(settings: Settings) -> ScheduleStore:
    return ScheduleStore(aws.events(settings), settings.schedule_prefix, settings.scheduler_arn)


@pytest.fixture
def fire(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The scheduler Lambda handler, in-process, wired to this test's resources."""
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    # A cold start with this test's settings, read from the environment as on Lambda.
    handler = entry(SchedulerFunction, Services.from_env)
    return lambda event: handler(event, None)


def clock_at(settings: Settings, fire: Any, start: datetime) -> tuple[RuleClock, ManualTime]:
    t = ManualTime(start)
    return RuleClock(aws.events(settings), fire, settings.scheduler_arn, clock=t), t


def scheduled_tasks(core: Enqueuer, tenant: str = "default") -> list[Any]:
    tasks, _ = core.store.list_tasks(tenant, limit=1000)
    return sorted(
        (t for t in tasks if (t.idempotency_key or "").startswith("schedule:")),
        key=lambda t: t.idempotency_key,
    )


def spec(expression: str, enabled: bool = True, **options: Any) -> ScheduleSpec:
    return ScheduleSpec(
        expression=expression,
        task=TaskRequest(name="echo", payload={"x": 1}),
        enabled=enabled,
        **options,
    )


def test_put_get_list_delete(store: ScheduleStore) -> None:
    created, is_new, _ = store.put("acme", "nightly", spec("cron(0 3 * * ? *)"))
    assert is_new
    assert created.next_runs[0].hour == 3
    assert len(created.next_runs) == 5
    _, is_new, _ = store.put("acme", "nightly", spec("rate(1 hour)"))
    assert not is_new
    got = store.get("acme", "nightly")
    assert got.expression == "rate(1 hour)"
    assert got.task.payload == {"x": 1}
    assert [s.name for s in store.list_schedules("acme")] == ["nightly"]
    assert store.list_schedules("other") == []
    with pytest.raises(NotFoundError):
        store.get("other", "nightly")
    store.delete("acme", "nightly")
    with pytest.raises(NotFoundError):
        store.get("acme", "nightly")


def test_an_invalid_expression_never_becomes_a_rule(store: ScheduleStore) -> None:
    with pytest.raises(ExpressionError):
        store.put("acme", "bad", spec("cron(0 12 * * * *)"))
    assert store.list_schedules("acme") == []


def test_rate_schedule_fires_at_its_times_without_replaying_the_past(
    settings: Settings, core: Enqueuer, store: ScheduleStore, fire: Any
) -> None:
    start = datetime(2030, 1, 31, 23, 58, 30, tzinfo=UTC)
    clock, t = clock_at(settings, fire, start)
    assert clock.tick() == 0  # the clock starts now: nothing before it fires
    store.put("default", "minutely", spec("rate(1 minute)"))
    assert clock.tick() == 0
    t.now = start + timedelta(minutes=3)  # 00:01:30 on 1 February, across a month end
    assert clock.tick() == 3
    keys = [task.idempotency_key for task in scheduled_tasks(core)]
    assert keys == [
        "schedule:minutely:2030-01-31T23:59:00Z",
        "schedule:minutely:2030-02-01T00:00:00Z",
        "schedule:minutely:2030-02-01T00:01:00Z",
    ]
    assert all(task.payload == {"x": 1} for task in scheduled_tasks(core))


def test_cron_schedule_on_a_leap_day(
    settings: Settings, core: Enqueuer, store: ScheduleStore, fire: Any
) -> None:
    store.put("default", "leap", spec("cron(30 6 29 2 ? *)"))
    clock, t = clock_at(settings, fire, datetime(2032, 2, 28, 12, 0, tzinfo=UTC))
    clock.tick()
    t.now = datetime(2032, 2, 29, 6, 29, tzinfo=UTC)
    assert clock.tick() == 0
    t.now = datetime(2032, 2, 29, 6, 31, tzinfo=UTC)
    assert clock.tick() == 1
    assert [x.idempotency_key for x in scheduled_tasks(core)] == [
        "schedule:leap:2032-02-29T06:30:00Z"
    ]


def test_disabled_rules_do_not_fire(
    settings: Settings, core: Enqueuer, store: ScheduleStore, fire: Any
) -> None:
    store.put("default", "off", spec("rate(1 minute)", enabled=False))
    clock, t = clock_at(settings, fire, datetime(2030, 1, 1, tzinfo=UTC))
    clock.tick()
    t.now += timedelta(minutes=10)
    assert clock.tick() == 0
    assert scheduled_tasks(core) == []


def test_two_clocks_create_each_scheduled_task_once(
    settings: Settings, core: Enqueuer, store: ScheduleStore, fire: Any
) -> None:
    store.put("default", "twice", spec("rate(1 minute)"))
    start = datetime(2030, 6, 1, 12, 0, 30, tzinfo=UTC)
    first, t1 = clock_at(settings, fire, start)
    second, t2 = clock_at(settings, fire, start)
    first.tick()
    second.tick()
    t1.now = t2.now = start + timedelta(minutes=5)
    assert first.tick() == 5
    assert second.tick() == 5
    tasks = scheduled_tasks(core)
    assert len(tasks) == 5
    assert len({t.idempotency_key for t in tasks}) == 5
    # Each task was also sent to the queue once per fire (the duplicate send is
    # deduplicated by the claim, not by the enqueue).
    assert all(t.status.value == "queued" for t in tasks)


def test_static_schedule_from_the_template_fires_when_enabled(
    settings: Settings, core: Enqueuer, fire: Any
) -> None:
    events = aws.events(settings)
    [rule] = [r for r in events.list_rules()["Rules"] if r["Name"].endswith("static-heartbeat")]
    assert rule["State"] == "DISABLED"
    clock, t = clock_at(settings, fire, datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
    clock.tick()
    t.now = datetime(2030, 1, 1, 1, 30, tzinfo=UTC)
    assert clock.tick() == 0
    events.enable_rule(Name=rule["Name"])
    clock.tick()  # first sight of the enabled rule: from now on
    t.now = datetime(2030, 1, 1, 2, 30, tzinfo=UTC)
    assert clock.tick() == 1
    [task] = scheduled_tasks(core)
    assert task.payload == {"heartbeat": True}
    # A constant input carries no fire time: the scheduler uses the expression's
    # nominal fire time at or before its own clock (on the hour for rate(1 hour)).
    assert re.fullmatch(r"schedule:heartbeat:\d{4}-\d\d-\d\dT\d\d:00:00Z", task.idempotency_key)


def test_a_restarted_clock_does_not_replay_missed_fires(
    settings: Settings, core: Enqueuer, store: ScheduleStore, fire: Any
) -> None:
    store.put("default", "m", spec("rate(1 minute)"))
    start = datetime(2030, 3, 1, 8, 0, 30, tzinfo=UTC)
    before, t = clock_at(settings, fire, start)
    before.tick()
    t.now = start + timedelta(minutes=2)
    assert before.tick() == 2
    # Down for ten minutes, then a new clock (a restarted process) starts.
    after, t2 = clock_at(settings, fire, start + timedelta(minutes=12))
    assert after.tick() == 0
    t2.now = start + timedelta(minutes=13)
    assert after.tick() == 1
    assert [x.idempotency_key for x in scheduled_tasks(core)] == [
        "schedule:m:2030-03-01T08:01:00Z",
        "schedule:m:2030-03-01T08:02:00Z",
        "schedule:m:2030-03-01T08:13:00Z",
    ]


def test_zoned_schedule_round_trip(settings: Settings, store: ScheduleStore) -> None:
    options = {"timezone": "Europe/Berlin", "jitter_seconds": 30, "missed": "run_once"}
    put = store.put("acme", "berlin", spec("cron(30 2 * * ? *)", **options))
    got = store.get("acme", "berlin")
    assert got.model_dump(include={"expression", "timezone", "jitter_seconds", "missed"}) == {
        "expression": "cron(30 2 * * ? *)",
        **options,
    }
    assert got.next_runs == put.schedule.next_runs
    assert all(re.search(r"T02:30:00\+0[12]:00$", t) for t in got.next_runs_local)
    # EventBridge rules read cron in UTC: the rule fires hourly at :30 and the scheduler
    # keeps the fire times of the zone.
    rule = aws.events(settings).describe_rule(
        Name=rule_name(settings.schedule_prefix, "acme", "berlin")
    )
    assert rule["ScheduleExpression"] == "cron(30 * * * ? *)"
    [listed] = store.list_schedules("acme")
    assert listed.timezone == "Europe/Berlin"


def test_zoned_schedule_fires_once_on_the_fall_back_night_with_jitter(
    settings: Settings, core: Enqueuer, store: ScheduleStore, fire: Any
) -> None:
    # 27 October 2030: Berlin's 02:30 happens twice (CEST, then CET).
    store.put(
        "default", "night", spec("cron(30 2 * * ? *)", timezone="Europe/Berlin", jitter_seconds=600)
    )
    clock, t = clock_at(settings, fire, datetime(2030, 10, 26, 12, 0, tzinfo=UTC))
    clock.tick()
    t.now = datetime(2030, 10, 27, 12, 0, tzinfo=UTC)
    assert clock.tick() == 24  # the rule fired hourly; the scheduler kept one
    [task] = scheduled_tasks(core)
    assert task.idempotency_key == "schedule:night:2030-10-27T00:30:00Z"
    delay = jitter_delay("default", "night", datetime(2030, 10, 27, 0, 30, tzinfo=UTC), 600)
    assert delay > 0
    assert task.status.value == "scheduled"
    assert task.scheduled_for is not None
    assert (task.scheduled_for - task.created_at).total_seconds() == pytest.approx(delay, abs=1)


def test_run_once_on_enable_catches_up_one_missed_fire(
    store: ScheduleStore, core: Enqueuer
) -> None:
    t0 = datetime(2030, 5, 1, 10, 0, tzinfo=UTC)

    def put(enabled: bool, minutes: int) -> Schedule:
        hourly = spec("cron(0 * * * ? *)", enabled, missed="run_once")
        at = t0 + timedelta(minutes=minutes)
        return put_schedule(store, core, "default", "catch", hourly, at)[0]

    put(True, 0)
    assert put(False, 5).disabled_at == t0 + timedelta(minutes=5)
    # Disabling again keeps the first moment; three fire times pass meanwhile.
    put(False, 60)
    assert store.get("default", "catch").disabled_at == t0 + timedelta(minutes=5)
    on = put(True, 200)
    assert on.caught_up_task_id is not None
    [task] = scheduled_tasks(core)
    assert task.id == on.caught_up_task_id
    assert task.idempotency_key == "schedule:catch:2030-05-01T13:00:00Z"  # the latest missed
    assert put(True, 240).caught_up_task_id is None  # already enabled: nothing to catch up
    assert len(scheduled_tasks(core)) == 1


def test_skip_policy_and_no_missed_time_enqueue_nothing_on_enable(
    store: ScheduleStore, core: Enqueuer
) -> None:
    t0 = datetime(2030, 5, 1, 10, 0, tzinfo=UTC)

    def put(name: str, enabled: bool, hours: int, missed: str) -> Schedule:
        daily = spec("cron(0 9 * * ? *)", enabled, missed=missed)
        return put_schedule(store, core, "default", name, daily, t0 + timedelta(hours=hours))[0]

    put("skip", False, 0, "skip")
    assert put("skip", True, 72, "skip").caught_up_task_id is None
    put("early", False, 0, "run_once")
    assert put("early", True, 20, "run_once").caught_up_task_id is None  # 09:00 not yet
    assert scheduled_tasks(core) == []
