"""Listing and bulk retry by filter over HTTP against the emulator (issue 22): queue and
creation-time filters of `GET /v1/tasks` and `POST /v1/tasks/retry`, through the SDK, the
real authorizer and the gateway; and the lease holder on a task."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from stratoq import Client
from stratoq.adapters.store import Claimed
from stratoq.cli import main as cli
from stratoq.core.clock import from_ms
from stratoq.core.errors import InvalidRequest
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.gateway import Served, serve_api
from tests.support.pump import pump_until_final
from tests.support.store import NOW, OTHER


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A second queue, `reports` (on the default queue's SQS queue: nothing here runs)."""
    settings.queues["reports"] = settings.queues["default"]
    return settings


@pytest.fixture
def served(settings: Settings) -> Iterator[Served]:
    with serve_api(settings) as running:
        yield running


@pytest.fixture
def api(served: Served) -> Client:
    """The SDK on the API, with an admin key of the default tenant (the operator's)."""
    return Client(served.url, served.key)


def put(core: Enqueuer, at_ms: int, tenant: str = "default", **fields: Any) -> Task:
    """A task stored as created at `at_ms`; `fields` override any of its fields."""
    task = core.build(TaskRequest(name=fields.pop("name", "echo")), tenant)
    task = task.model_copy(update={"created_at": from_ms(at_ms), **fields})
    assert core.store.create(task, at_ms)[1]
    return task


def at(ms: int) -> datetime:
    when = from_ms(ms)
    assert when is not None
    return when


def every(page: Any) -> list[str]:
    return [t.id for p in page.pages() for t in p]


def test_list_by_queue_and_creation_time_page_by_page(core: Enqueuer, api: Client) -> None:
    reports = [put(core, NOW + i * 10, queue="reports").id for i in range(6)]
    default = [put(core, NOW + i * 10 + 5).id for i in range(6)]
    put(core, NOW + 3, tenant=OTHER, queue="reports")
    # A batch (one listing page for its tasks) is filtered the same way.
    batch = [r.task.id for r in core.enqueue_many([TaskRequest(name="echo")] * 3)]

    assert every(api.list(queue="reports", limit=2)) == reports[::-1]
    listed = every(api.list(queue="default", limit=4))
    assert listed[:6] == default[::-1]  # the batch was made now: before NOW
    assert sorted(listed[6:]) == sorted(batch)
    # Both ends exclusive: (NOW+10, NOW+40) holds the tasks made at 15, 20, 25, 30, 35.
    window = api.list(created_after=at(NOW + 10), created_before=at(NOW + 40), limit=2)
    assert every(window) == [default[3], reports[3], default[2], reports[2], default[1]]
    assert (
        every(api.list(queue="reports", created_after="2027-01-15T08:00:00.010Z", limit=1))
        == reports[:1:-1]
    )
    assert every(api.list(created_before=at(NOW), queue="reports")) == []
    # Status, name and queue together, as text times.
    assert every(
        api.list(TaskStatus.QUEUED, "echo", queue="reports", created_before=at(NOW + 21))
    ) == [reports[2], reports[1], reports[0]]


def test_the_cli_lists_and_retries_by_the_same_filters(
    core: Enqueuer, served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    def stratoq(*argv: str) -> str:
        assert cli.main(["--api-url", served.url, "--api-key", served.key, *argv]) == 0
        return capsys.readouterr().out

    failed = [put(core, NOW + i, queue="reports", status=TaskStatus.FAILED).id for i in range(3)]
    put(core, NOW + 5, status=TaskStatus.FAILED)  # another queue
    listed = stratoq("tasks", "--queue", "reports", "--created-after", "2027-01-15T08:00:00Z")
    assert [line.split()[0] for line in listed.splitlines()] == failed[:0:-1]
    out = stratoq(
        "retry", "--failed", "--queue", "reports", "--created-before", "2027-01-15T08:00:00.002Z"
    )
    assert out.strip() == "retried 2 failed task(s)"
    assert {t.status for t in core.store.get_many(failed[:2]).values()} == {TaskStatus.QUEUED}


def test_a_token_holds_for_the_filters_it_was_made_with(core: Enqueuer, api: Client) -> None:
    for i in range(4):
        put(core, NOW + i, queue="reports")
    first = api.list(queue="reports", created_after=at(NOW), limit=1)
    assert first.next_token is not None
    # The token's place (NOW+3) is outside this range: refused, not a DynamoDB error.
    with pytest.raises(InvalidRequest) as refused:
        api.list(created_before=at(NOW + 2), next_token=first.next_token)
    assert refused.value.status == 400
    assert [e["field"] for e in refused.value.errors] == ["next_token"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2030-01-01T09:00:00"}, "created_before"),  # no offset
        ({"queue": "Not A Queue"}, "queue"),
        (
            {"created_after": "2030-01-02T00:00:00Z", "created_before": "2030-01-01T00:00:00Z"},
            "created_after",
        ),
    ],
)
def test_bad_filters_are_4xx_naming_the_field(
    api: Client, query: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        api.list(**query)  # type: ignore[arg-type]
    assert 400 <= refused.value.status < 500
    assert field in [e["field"] for e in refused.value.errors], refused.value.errors
    with pytest.raises(InvalidRequest) as also:
        api.retry_failed(**query)  # type: ignore[arg-type]
    assert field in [e["field"] for e in also.value.errors], also.value.errors


def test_retry_failed_by_queue_name_and_time(core: Enqueuer, api: Client) -> None:
    def failed(at_ms: int, **fields: Any) -> str:
        return put(core, at_ms, status=TaskStatus.FAILED, attempts=1, **fields).id

    old = failed(NOW - 1000)
    echo = [failed(NOW + i) for i in range(3)]
    sleep = failed(NOW + 5, name="sleep")
    elsewhere = failed(NOW + 6, queue="reports")
    put(core, NOW + 7)  # queued, not failed: never retried

    answer = api.retry_failed(queue="default", name="echo", created_after=at(NOW - 1))
    assert answer["retried"] == 3 and answer["more"] is False
    assert sorted(answer["task_ids"]) == sorted(echo)
    left = set(every(api.list(TaskStatus.FAILED)))
    assert left == {old, sleep, elsewhere}
    # A window, one at a time: `more` says there is another.
    first = api.retry_failed(created_before=at(NOW + 6), max_tasks=1)
    assert (first["task_ids"], first["more"]) == ([sleep], True)
    assert api.retry_failed(created_before=at(NOW + 6))["task_ids"] == [old]
    assert api.retry_failed(queue="reports")["task_ids"] == [elsewhere]
    assert api.retry_failed()["retried"] == 0


def test_the_lease_holder_is_shown_while_running_and_after(core: Enqueuer, api: Client) -> None:
    # A worker names itself host/pid/thread by default, and the name stays after.
    tid = core.enqueue(TaskRequest(name="echo", payload=1)).task.id
    assert api.get(tid).holder is None  # no attempt yet
    [done] = pump_until_final(core, Worker(core.store, core.transport, InlineRunner()), [tid])
    assert done.status is TaskStatus.SUCCEEDED
    shown = api.get(tid).holder
    assert shown is not None and shown.startswith(f"{socket.gethostname()}/{os.getpid()}/")

    held = put(core, NOW).id  # stored only: no message for the pump above to meet
    claim = core.store.claim(held, "default", NOW, 30_000, "box-7/42/slot-3")
    assert isinstance(claim, Claimed)
    running = api.get(held)
    assert (running.status, running.holder) == (TaskStatus.RUNNING, "box-7/42/slot-3")
    assert claim.token not in str(running.model_dump(mode="json"))  # the fence stays secret


def test_whoami_names_the_key(settings: Settings, api: Client) -> None:
    assert api.whoami() == {"tenant": "default", "scopes": ["admin"], "operator": True}
