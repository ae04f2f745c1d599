"""Schedules over HTTP and the CLI, fired by the dev stack's rule clock (run 60x fast)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from stratoq import Client
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support.procs import wait_for


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = start_dev(tmp_path_factory.mktemp("sched"), "--clock-speed", "60")
    try:
        yield stack
    finally:
        assert stop_dev(stack) == 0, stack.log.read_text()[-3000:]


def scheduled(client: Client, name: str) -> list[str]:
    return sorted(
        t.idempotency_key or ""
        for t in client.iter_tasks(name="echo")
        if (t.idempotency_key or "").startswith(f"schedule:{name}:")
    )


def test_rate_schedule_created_over_http_produces_tasks(fast: DevStack) -> None:
    client = Client(fast.api_url, fast.api_key)
    status, body = fast.request(
        "PUT",
        "/v1/schedules/every-minute",
        {"expression": "rate(1 minute)", "task": {"name": "echo", "payload": {"tick": True}}},
    )
    assert status == 201, body
    runs = [datetime.fromisoformat(r) for r in body["next_runs"]]
    assert len(runs) == 5
    assert {(b - a).total_seconds() for a, b in itertools.pairwise(runs)} == {60.0}
    # At 60x, a virtual minute passes every real second.
    keys = wait_for(
        lambda: k if len(k := scheduled(client, "every-minute")) >= 3 else None,
        30,
        "three scheduled tasks",
    )
    assert len(set(keys)) == len(keys)
    first = client.list(name="echo", limit=1000)
    done = [t for t in first if (t.idempotency_key or "").startswith("schedule:every-minute:")]
    assert all(t.payload == {"tick": True} for t in done)
    status, _ = fast.request("DELETE", "/v1/schedules/every-minute")
    assert status == 200
    settled = len(scheduled(client, "every-minute"))
    time.sleep(3)  # an observation window of 3 virtual minutes: no fire may happen in it
    assert len(scheduled(client, "every-minute")) <= settled + 1  # one fire may be in flight


def test_schedule_crud_validation_and_trigger(fast: DevStack) -> None:
    task = {"name": "echo", "payload": 1}
    status, body = fast.request(
        "PUT", "/v1/schedules/daily", {"expression": "cron(0 12 * * ? *)", "task": task}
    )
    assert status == 201
    status, body = fast.request(
        "PUT",
        "/v1/schedules/daily",
        {"expression": "cron(0 13 * * ? *)", "task": task, "enabled": False},
    )
    assert status == 200
    assert body["enabled"] is False
    assert body["next_runs"] == []
    status, body = fast.request("GET", "/v1/schedules/daily")
    assert (status, body["expression"]) == (200, "cron(0 13 * * ? *)")
    status, body = fast.request("GET", "/v1/schedules")
    assert "daily" in [s["name"] for s in body["schedules"]]
    status, body = fast.request(
        "PUT", "/v1/schedules/bad", {"expression": "cron(0 12 * * * *)", "task": task}
    )
    assert status == 422
    assert body["errors"][0]["field"] == "expression"
    assert "day-of-month and day-of-week" in body["message"]
    status, body = fast.request("PUT", "/v1/schedules/bad", {"expression": "rate(5 minutes)"})
    assert status == 422
    assert "task" in [e["field"] for e in body["errors"]]
    assert fast.request("GET", "/v1/schedules/nope")[0] == 404
    status, triggered = fast.request("POST", "/v1/schedules/daily/trigger")
    assert status == 202
    assert triggered["payload"] == 1
    done = Client(fast.api_url, fast.api_key).wait(triggered["id"], timeout=30)
    assert done.status.value == "succeeded"
    writer = fast.request("POST", "/v1/keys", {"tenant": "default", "scopes": ["tasks:write"]})
    status, body = fast.request("GET", "/v1/schedules", key=writer[1]["key"])
    assert status == 403
    assert "admin" in body["message"]


def test_cli_schedules(fast: DevStack) -> None:
    out = fast.cli(
        "schedules", "preview", "cron(0 9 ? * 2#1 *)", "-n", "3", "--after", "2024-01-01T00:00:00Z"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "2024-01-01T09:00:00Z",
        "2024-02-05T09:00:00Z",
        "2024-03-04T09:00:00Z",
    ]
    bad = fast.cli("schedules", "preview", "rate(1 minutes)")
    assert bad.returncode == 2
    assert "singular" in bad.stderr
    put = fast.cli(
        "schedules",
        "put",
        "report",
        "-e",
        "rate(2 hours)",
        "--task",
        "echo",
        "--payload",
        '{"r": 1}',
    )
    assert put.returncode == 0, put.stderr
    listed = fast.cli("schedules", "list")
    assert "report" in listed.stdout
    assert "rate(2 hours)" in listed.stdout
    assert fast.cli("schedules", "show", "report").returncode == 0
    trig = fast.cli("schedules", "trigger", "report")
    assert trig.returncode == 0, trig.stderr
    assert fast.cli("schedules", "delete", "report").returncode == 0
    assert fast.cli("schedules", "show", "report").returncode == 1


def test_schedule_in_a_time_zone_fires_at_its_zones_minutes(fast: DevStack) -> None:
    client = Client(fast.api_url, fast.api_key)
    # Kathmandu is UTC+5:45: every even minute there is an odd minute in UTC.
    created = client.put_schedule(
        "nepal", "cron(0/2 * * * ? *)", {"name": "echo"}, timezone="Asia/Kathmandu"
    )
    assert created["timezone"] == "Asia/Kathmandu"
    assert all(t.endswith("+05:45") for t in created["next_runs_local"])
    assert all(int(t[14:16]) % 2 == 0 for t in created["next_runs_local"])
    keys = wait_for(
        lambda: k if len(k := scheduled(client, "nepal")) >= 2 else None, 30, "two zoned fires"
    )
    minutes = [datetime.fromisoformat(key.split(":", 2)[2]).minute for key in keys]
    assert all(m % 2 == 1 for m in minutes), keys
    fast.request("DELETE", "/v1/schedules/nepal")
    task = {"name": "echo"}
    for field, value in [("timezone", "Mars/Olympus"), ("jitter_seconds", 7200), ("missed", "x")]:
        body = {"expression": "cron(0 9 * * ? *)", "task": task, field: value}
        status, answer = fast.request("PUT", "/v1/schedules/bad", body)
        assert (status, answer["errors"][0]["field"]) == (400, field), answer
    cli = fast.cli(
        *("schedules", "create", "berlin", "-e", "cron(30 2 * * ? *)", "--task", "echo"),
        *("--timezone", "Europe/Berlin", "--jitter", "30", "--missed", "run_once"),
    )
    assert cli.returncode == 0, cli.stderr
    assert '"missed": "run_once"' in cli.stdout
    bad = fast.cli(
        "schedules", "create", "x", "-e", "rate(1 hour)", "--task", "echo", "--tz", "Nowhere"
    )
    assert bad.returncode == 2
    assert "timezone 'Nowhere' is not an IANA time zone name" in bad.stderr
    assert "Traceback" not in bad.stderr
