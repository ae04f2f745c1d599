"""What task answers show, over HTTP, the SDK and the CLI: final tasks carry no pending
retry, every time has one format, and a listing is a page of tasks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stratoq import Client
from stratoq.sdk.client import Page
from tests.e2e.conftest import DevStack
from tests.support.procs import wait_for

# RFC 3339 in UTC, milliseconds, `Z`: the one format of every time the API answers.
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T")


@pytest.fixture(scope="module")
def client(dev: DevStack) -> Client:
    return Client(dev.api_url, dev.api_key)


def key_for(dev: DevStack, tenant: str, scopes: str) -> str:
    status, body = dev.request("POST", "/v1/keys", {"tenant": tenant, "scopes": scopes.split()})
    assert status == 201, body
    return str(body["key"])


def get(dev: DevStack, task_id: str) -> dict[str, Any]:
    status, body = dev.request("GET", f"/v1/tasks/{task_id}")
    assert status == 200, body
    return dict(body)


def retrying(dev: DevStack, task_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (t := get(dev, task_id))["status"] == "retrying" and t, 30, "a retrying task"
    )


# ------------------------------------------------------------- times (issue 25, 5)
def times_in(body: Any, key: str = "") -> list[str | None]:
    """Every time in an answer: values of `*_at`, `at` and `next_runs`, and any string
    that starts like a date."""
    found: list[str | None] = []
    if isinstance(body, dict):
        for k, v in body.items():
            if k.endswith("_at") or k == "at":
                found.append(v if v is None or isinstance(v, str) else repr(v))
            else:
                found.extend(times_in(v, k))
    elif isinstance(body, list):
        for v in body:
            if key == "next_runs":
                found.append(v)
            else:
                found.extend(times_in(v))
    elif isinstance(body, str) and LOOKS_LIKE_TIME.match(body):
        found.append(body)
    return found


def assert_times(body: Any, at_least: int) -> None:
    shown = [t for t in times_in(body) if t is not None]
    assert len(shown) >= at_least, body
    assert [t for t in shown if not TIME.fullmatch(t)] == [], body


def test_created_at_is_the_same_string_in_the_202_and_later(dev: DevStack) -> None:
    status, created = dev.request("POST", "/v1/tasks", {"name": "echo", "payload": "t"})
    assert status == 202, created
    assert TIME.fullmatch(created["created_at"]), created["created_at"]
    assert get(dev, created["id"])["created_at"] == created["created_at"]
    status, batch = dev.request("POST", "/v1/tasks/batch", {"tasks": [{"name": "echo"}] * 2})
    assert status == 202, batch
    assert_times(batch, 2)
    assert [get(dev, t["id"])["created_at"] for t in batch["tasks"]] == [
        t["created_at"] for t in batch["tasks"]
    ]


def test_every_time_in_the_answers_has_milliseconds_and_z(dev: DevStack, client: Client) -> None:
    done = client.wait(
        client.enqueue("fail", {"times": 1}, backoff={"base_seconds": 0}).id, timeout=60
    )
    finished = get(dev, done.id)
    assert_times(finished, 4)  # created, started, finished, the error's `at`
    waiting = client.enqueue("fail", {"times": 1}, backoff={"base_seconds": 600})
    assert_times(retrying(dev, waiting.id), 4)  # with next_attempt_at
    status, cancelled = dev.request("POST", f"/v1/tasks/{waiting.id}/cancel")
    assert status == 200
    assert_times(cancelled, 4)
    status, page = dev.request("GET", "/v1/tasks?limit=20")
    assert status == 200
    assert_times(page, 20)

    status, schedule = dev.request(
        "PUT", "/v1/schedules/times", {"expression": "rate(1 day)", "task": {"name": "echo"}}
    )
    assert status == 201, schedule
    assert_times(schedule, 5)  # next_runs
    assert dev.request("DELETE", "/v1/schedules/times")[0] == 200

    status, key = dev.request("POST", "/v1/keys", {"tenant": "times", "scopes": ["tasks:read"]})
    assert status == 201, key
    assert_times(key, 1)
    status, keys = dev.request("GET", "/v1/keys?tenant=times")
    assert status == 200
    assert_times(keys, 1)


def test_the_spec_still_calls_them_date_times(dev: DevStack) -> None:
    status, spec = dev.request("GET", "/v1/openapi.json")
    assert status == 200
    schemas = spec["components"]["schemas"]

    def fmt(prop: dict[str, Any]) -> str | None:
        for option in [prop, *prop.get("anyOf", [])]:
            if option.get("type") == "string":
                return option.get("format")
        return None

    task = schemas["Task"]["properties"]
    assert {fmt(task[f]) for f in ("created_at", "finished_at", "next_attempt_at")} == {"date-time"}
    assert fmt(schemas["KeyRecord"]["properties"]["created_at"]) == "date-time"


# ------------------------------------------------------------ pages (issue 25, 8)
def test_list_returns_a_page_of_tasks(dev: DevStack) -> None:
    client = Client(dev.api_url, key_for(dev, "pages", "tasks:write"))
    made = [client.enqueue("echo", i, delay_seconds=600).id for i in range(5)]

    page = client.list(limit=2)
    assert isinstance(page, Page)
    assert len(page) == 2
    assert [t.id for t in page] == [t.id for t in page.tasks]
    assert page.next_token
    walked = list(page.pages())
    assert [len(p) for p in walked] == [2, 2, 1]
    assert walked[-1].next_token is None and walked[-1].next_page() is None
    ids = [t.id for p in walked for t in p]
    assert sorted(ids) == sorted(made)
    assert [t.id for t in client.iter_tasks(page_size=2)] == ids

    second = client.list(limit=2, next_token=page.next_token)
    assert [t.id for t in second] == [t.id for t in walked[1]]
    assert [t.id for t in client.list(status="scheduled", limit=10)] == ids


def test_cli_lists_a_page_and_its_next_token(dev: DevStack, client: Client) -> None:
    for i in range(2):
        client.enqueue("echo", i, delay_seconds=600)
    out = dev.cli("tasks", "--limit", "1", "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert len(first["tasks"]) == 1 and first["next_token"]
    out = dev.cli("tasks", "--limit", "1", "--next-token", first["next_token"])
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    assert not line.startswith(first["tasks"][0]["id"])
    assert "more: --next-token" in out.stderr
