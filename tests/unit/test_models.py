"""Validation at the edges: TaskRequest, the SQS message body, Settings from the environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from stratoq.adapters.transport import TaskMessage
from stratoq.core.errors import ConfigError
from stratoq.core.models import (
    MAX_ATTEMPTS,
    MAX_DELAY_SECONDS,
    MAX_TIMEOUT_SECONDS,
    Backoff,
    Priority,
    TaskRequest,
)
from stratoq.core.settings import Settings


def error_locs(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


# -------------------------------------------------------------------- TaskRequest
def test_only_name_is_required_and_defaults_apply() -> None:
    req = TaskRequest(name="echo")
    assert req.name == "echo"
    assert req.payload is None
    assert req.queue == "default"
    assert req.priority is Priority.DEFAULT
    assert req.delay_seconds is None
    assert req.run_at is None
    assert req.timeout_seconds is None
    assert req.max_attempts is None
    assert req.backoff is None
    assert req.idempotency_key is None
    assert req.lock_key is None


def test_name_is_required() -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate({"payload": 1})
    assert error_locs(info.value) == {"name"}


def test_extra_fields_are_rejected_and_named() -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate({"name": "echo", "delay": 5})
    assert error_locs(info.value) == {"delay"}
    assert "delay" in str(info.value)


def test_extra_fields_in_backoff_are_rejected_too() -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate({"name": "echo", "backoff": {"factor": 3}})
    assert error_locs(info.value) == {"backoff.factor"}


@pytest.mark.parametrize(
    "name", ["a", "A_b", "_private", "emails.send", "ns:task-1", "9lives", "x" * 128]
)
def test_good_names(name: str) -> None:
    assert TaskRequest(name=name).name == name


@pytest.mark.parametrize(
    "name", ["", "-dash-first", ".dot", "has space", "slash/name", "é", "x" * 129, "a\n"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest(name=name)
    assert error_locs(info.value) == {"name"}


@pytest.mark.parametrize("queue", ["default", "high", "q1", "0", "a-b_c", "x" * 64])
def test_good_queues(queue: str) -> None:
    assert TaskRequest(name="t", queue=queue).queue == queue


@pytest.mark.parametrize("queue", ["", "High", "-q", "_q", "a.b", "a b", "x" * 65])
def test_bad_queues(queue: str) -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest(name="t", queue=queue)
    assert error_locs(info.value) == {"queue"}


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("delay_seconds", [0, 1, MAX_DELAY_SECONDS], [-1, MAX_DELAY_SECONDS + 1]),
        ("timeout_seconds", [1, MAX_TIMEOUT_SECONDS], [0, -1, MAX_TIMEOUT_SECONDS + 1]),
        ("max_attempts", [1, MAX_ATTEMPTS], [0, -1, MAX_ATTEMPTS + 1]),
    ],
)
def test_numeric_bounds(field: str, good: list[int], bad: list[int]) -> None:
    for value in good:
        assert getattr(TaskRequest.model_validate({"name": "t", field: value}), field) == value
    for value in bad:
        with pytest.raises(ValidationError) as info:
            TaskRequest.model_validate({"name": "t", field: value})
        assert error_locs(info.value) == {field}, value


def test_bound_constants_are_sane() -> None:
    assert MAX_DELAY_SECONDS == 366 * 24 * 3600
    assert MAX_TIMEOUT_SECONDS == 12 * 3600
    assert MAX_ATTEMPTS == 100


@pytest.mark.parametrize("key", ["idempotency_key", "lock_key"])
def test_key_lengths(key: str) -> None:
    assert getattr(TaskRequest.model_validate({"name": "t", key: "k" * 256}), key) == "k" * 256
    for bad in ["", "k" * 257]:
        with pytest.raises(ValidationError) as info:
            TaskRequest.model_validate({"name": "t", key: bad})
        assert error_locs(info.value) == {key}


@pytest.mark.parametrize("delay", [0, 10])
def test_delay_seconds_with_run_at_is_rejected(delay: int) -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest(name="t", delay_seconds=delay, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert "either delay_seconds or run_at" in str(info.value)


def test_aware_run_at_is_accepted_in_any_zone() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5)))
    req = TaskRequest(name="t", run_at=at)
    assert req.run_at == at
    assert req.run_at.utcoffset() == timedelta(hours=5)


def test_run_at_from_iso_string_with_zone() -> None:
    req = TaskRequest.model_validate({"name": "t", "run_at": "2030-01-02T03:04:05Z"})
    assert req.run_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("run_at", [datetime(2030, 1, 2, 3, 4, 5), "2030-01-02T03:04:05"])
def test_naive_run_at_is_rejected(run_at: Any) -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate({"name": "t", "run_at": run_at})
    assert error_locs(info.value) == {"run_at"}


def test_bad_priority_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate({"name": "t", "priority": "urgent"})
    assert error_locs(info.value) == {"priority"}


def test_backoff_bounds() -> None:
    assert Backoff() == Backoff(base_seconds=2.0, max_seconds=600.0, jitter=True)
    for bad in [{"base_seconds": -1}, {"base_seconds": 3601}, {"max_seconds": -0.5}]:
        with pytest.raises(ValidationError):
            Backoff.model_validate(bad)


# -------------------------------------------------------------------- TaskMessage
@pytest.mark.parametrize(
    "msg",
    [
        TaskMessage("0190abc", "default"),
        TaskMessage("0190abc", "acme", 1_700_000_000_123),
        TaskMessage('id with "quotes" and ünïcode', "t#1", 0),
    ],
)
def test_task_message_round_trip(msg: TaskMessage) -> None:
    assert TaskMessage.decode(msg.encode()) == msg


def test_task_message_body_is_compact_and_omits_missing_not_before() -> None:
    assert TaskMessage("abc", "default").encode() == '{"id":"abc","t":"default"}'
    assert TaskMessage("abc", "x", 5).encode() == '{"id":"abc","t":"x","nb":5}'


def test_task_message_without_tenant_defaults() -> None:
    assert TaskMessage.decode('{"id":"abc"}') == TaskMessage("abc", "default", None)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "{",
        "null",
        "[]",
        '"abc"',
        "42",
        "{}",
        '{"t":"default"}',
        '{"id":42}',
        '{"id":null}',
        '{"id":"abc","nb":"soon"}',
        '{"id":"abc","nb":1.5}',
    ],
)
def test_task_message_decode_rejects_non_task_bodies(body: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the documented contract is ValueError
        TaskMessage.decode(body)


# ----------------------------------------------------------------------- Settings
def test_from_env_of_an_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_reads_every_variable() -> None:
    s = Settings.from_env(
        {
            "AWS_REGION": "eu-west-1",
            "STRATOQ_AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
            "STRATOQ_TASKS_TABLE": "t-tasks",
            "STRATOQ_QUEUES": "default=http://q/default, high = http://q/high ,",
            "STRATOQ_TASKS_MODULE": "my.tasks",
            "STRATOQ_LEASE_SECONDS": "45",
            "STRATOQ_POLL_WAIT_SECONDS": "0",
            "STRATOQ_DEFAULT_TIMEOUT_SECONDS": "60",
            "STRATOQ_DEFAULT_MAX_ATTEMPTS": "7",
            "STRATOQ_RETENTION_DAYS": "3",
        }
    )
    assert s == Settings(
        region="eu-west-1",
        aws_endpoint_url="http://127.0.0.1:5000",
        tasks_table="t-tasks",
        queues={"default": "http://q/default", "high": "http://q/high"},
        tasks_module="my.tasks",
        lease_seconds=45,
        poll_wait_seconds=0,
        default_timeout_seconds=60,
        default_max_attempts=7,
        retention_days=3,
    )


def test_region_falls_back_to_aws_default_region() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "ap-south-1"}).region == "ap-south-1"
    both = {"AWS_REGION": "eu-north-1", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert Settings.from_env(both).region == "eu-north-1"


def test_empty_endpoint_means_real_aws() -> None:
    assert Settings.from_env({"STRATOQ_AWS_ENDPOINT_URL": ""}).aws_endpoint_url is None


def test_queues_replace_the_default_queue() -> None:
    s = Settings.from_env({"STRATOQ_QUEUES": "low=stratoq-low"})
    assert s.queues == {"low": "stratoq-low"}
    assert Settings.from_env({}).queues == {"default": "stratoq-default"}


def test_queues_without_default_round_trip() -> None:
    s = Settings(queues={"high": "stratoq-high"})
    assert Settings.from_env(s.to_env()) == s


def test_queue_url_may_contain_equals_signs() -> None:
    s = Settings.from_env({"STRATOQ_QUEUES": "default=http://h/q?a=b"})
    assert s.queues == {"default": "http://h/q?a=b"}


@pytest.mark.parametrize("spec", ["default", "=url", "name=", " = ", "a=x,broken"])
def test_malformed_queue_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="STRATOQ_QUEUES"):
        Settings.from_env({"STRATOQ_QUEUES": spec})


@pytest.mark.parametrize("raw", ["abc", "1.5", "30s", " "])
def test_non_integer_lease_seconds_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="STRATOQ_LEASE_SECONDS") as info:
        Settings.from_env({"STRATOQ_LEASE_SECONDS": raw})
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("STRATOQ_LEASE_SECONDS", "1"),
        ("STRATOQ_POLL_WAIT_SECONDS", "-1"),
        ("STRATOQ_DEFAULT_TIMEOUT_SECONDS", "0"),
        ("STRATOQ_DEFAULT_MAX_ATTEMPTS", "0"),
        ("STRATOQ_RETENTION_DAYS", "0"),
    ],
)
def test_too_small_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be at least"):
        Settings.from_env({name: raw})


def test_empty_integer_variable_means_the_default() -> None:
    assert Settings.from_env({"STRATOQ_LEASE_SECONDS": ""}).lease_seconds == 30


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOQ_TASKS_TABLE", "from-os-environ")
    assert Settings.from_env().tasks_table == "from-os-environ"


@pytest.mark.parametrize(
    "settings",
    [
        Settings(),
        Settings(
            region="eu-central-1",
            aws_endpoint_url="http://localhost:4566",
            tasks_table="x-tasks",
            queues={"default": "http://q/d", "high": "http://q/h", "low": "stratoq-low"},
            tasks_module="tests.support.tasks",
            lease_seconds=2,
            poll_wait_seconds=0,
            default_timeout_seconds=1,
            default_max_attempts=1,
            retention_days=365,
        ),
    ],
)
def test_to_env_round_trips_through_from_env(settings: Settings) -> None:
    env = settings.to_env()
    assert all(isinstance(v, str) for v in env.values())
    assert Settings.from_env(env) == settings


def test_with_changes_a_copy() -> None:
    base = Settings()
    changed = base.with_(lease_seconds=99)
    assert changed.lease_seconds == 99
    assert base.lease_seconds == 30
