"""What task answers show, over HTTP, the SDK and the CLI: final tasks carry no pending
retry, every time has one format, and a listing is a page of tasks."""

from __future__ import annotations

import json
import re
from typing import Any

from stratoq import Client
from stratoq.adapters import aws
from stratoq.core.models import TaskStatus
from stratoq.core.settings import Settings
from stratoq.sdk.client import Page
from tests.e2e.conftest import DevStack, key_for
from tests.support.procs import wait_for

# RFC 3339 in UTC, milliseconds, `Z`: the one format of every time the API answers.
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T")
# The one documented exception: a schedule's fire times in its own zone, with the offset.
LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")


def get(dev: DevStack, task_id: str) -> dict[str, Any]:
    status, body = dev.request("GET", f"/v1/tasks/{task_id}")
    assert status == 200, body
    return dict(body)


def listed(dev: DevStack, task_id: str, status: str) -> dict[str, Any]:
    """The task as `GET /v1/tasks?status=` shows it."""
    code, page = dev.request("GET", f"/v1/tasks?status={status}&limit=1000")
    assert code == 200, page
    [task] = [t for t in page["tasks"] if t["id"] == task_id]
    return dict(task)


def shown_by_cli(dev: DevStack, task_id: str) -> dict[str, Any]:
    out = dev.cli("status", task_id)
    assert "Traceback" not in out.stderr, out.stderr
    return dict(json.loads(out.stdout))


def assert_no_pending_retry(dev: DevStack, client: Client, task_id: str, status: str) -> None:
    """GET, the listing, the SDK and `stratoq status` all show a final task without
    `error` and `next_attempt_at`, its attempts' errors kept in `errors`."""
    for shown in (get(dev, task_id), listed(dev, task_id, status), shown_by_cli(dev, task_id)):
        assert shown["status"] == status
        assert (shown["error"], shown["next_attempt_at"]) == (None, None), shown
        assert shown["errors"], shown
    task = client.get(task_id)
    assert (task.error, task.next_attempt_at) == (None, None)


def retrying(dev: DevStack, task_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (t := get(dev, task_id))["status"] == "retrying" and t, 30, "a retrying task"
    )


# ------------------------------------------------------- final tasks (issue 25, 4)
def test_a_task_that_succeeded_after_retries_shows_no_error(dev: DevStack, client: Client) -> None:
    task = client.enqueue("fail", {"times": 2}, backoff={"base_seconds": 0.2, "jitter": False})
    done = client.wait(task.id, timeout=60)
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 3)
    assert [e.attempt for e in done.errors] == [1, 2]
    assert_no_pending_retry(dev, client, task.id, "succeeded")


def test_a_cancelled_retry_shows_no_error(dev: DevStack, client: Client) -> None:
    task = client.enqueue("fail", {"times": 1}, backoff={"base_seconds": 600, "jitter": False})
    waiting = retrying(dev, task.id)
    assert waiting["error"] and waiting["next_attempt_at"]  # a pending retry shows both
    status, cancelled = dev.request("POST", f"/v1/tasks/{task.id}/cancel")
    assert status == 200, cancelled
    assert (cancelled["error"], cancelled["next_attempt_at"]) == (None, None)
    assert_no_pending_retry(dev, client, task.id, "cancelled")


def test_a_failed_task_keeps_its_errors_only_in_errors(dev: DevStack, client: Client) -> None:
    task = client.enqueue("fail", {}, max_attempts=2, backoff={"base_seconds": 0})
    done = client.wait(task.id, timeout=60)
    assert done.status is TaskStatus.FAILED
    assert [e.attempt for e in done.errors] == [1, 2]
    assert "attempt 2" in done.errors[-1].message
    assert_no_pending_retry(dev, client, task.id, "failed")


def test_final_tasks_that_older_code_stored_show_no_pending_retry(
    dev: DevStack, client: Client
) -> None:
    ok = client.enqueue("fail", {"times": 1}, backoff={"base_seconds": 0})
    failed = client.enqueue("give_up")
    cancelled = client.enqueue("echo", delay_seconds=600)
    client.cancel(cancelled.id)
    for t in (ok, failed):
        client.wait(t.id, timeout=60)
    # Older code finished tasks without removing the last retry's error and time.
    db = aws.dynamodb(Settings(aws_endpoint_url=dev.aws_endpoint_url))
    for t in (ok, failed, cancelled):
        db.update_item(
            TableName=Settings().tasks_table,
            Key={"pk": {"S": t.id}},
            UpdateExpression="SET #e = :e, next_attempt_at = :n, errors = :errs",
            ExpressionAttributeNames={"#e": "error"},
            ExpressionAttributeValues={
                ":e": {"S": "left over"},
                ":n": {"N": "1800000000000"},
                ":errs": {
                    "L": [
                        {
                            "M": {
                                "attempt": {"N": "1"},
                                "kind": {"S": "error"},
                                "message": {"S": "left over"},
                                "at": {"N": "1700000000000"},
                            }
                        }
                    ]
                },
            },
        )
    assert_no_pending_retry(dev, client, ok.id, "succeeded")
    assert_no_pending_retry(dev, client, failed.id, "failed")
    assert_no_pending_retry(dev, client, cancelled.id, "cancelled")


# ------------------------------------------------------------- times (issue 25, 5)
def times_in(body: Any, key: str = "") -> list[str | None]:
    """Every time in an answer: values of `*_at`, `at` and `next_runs`, and any string
    that starts like a date; `next_runs_local` is checked here against its own format."""
    found: list[str | None] = []
    if isinstance(body, dict):
        for k, v in body.items():
            if k == "next_runs_local":
                assert [t for t in v if not LOCAL_TIME.fullmatch(t)] == [], body
            elif k.endswith("_at") or k == "at":
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
    # At least this test's two tasks (other tests of the module may run on another
    # xdist worker, with another stack).
    assert_times(page, 8)

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
