"""`@stratoq.task` against a real `stratoq dev` running tests.support.typed_tasks: the
API applies the tasks' options and checks typed payloads over HTTP; `.enqueue(...)`
returns a handle whose `.result()` waits for the outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import stratoq
from stratoq import Client
from stratoq.sdk.tasks import use_client
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support.typed_tasks import AddIn, typed_add, typed_elsewhere, typed_refuse


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = start_dev(tmp_path_factory.mktemp("dev"), "--tasks", "tests.support.typed_tasks")
    try:
        yield stack
    finally:
        assert stop_dev(stack) == 0, stack.log.read_text()[-3000:]


def test_a_request_with_only_a_name_gets_the_tasks_options(dev: DevStack) -> None:
    status, task = dev.request(
        "POST", "/v1/tasks", {"name": "typed_add", "payload": {"a": 1, "b": 2}}
    )
    assert status == 202, task
    got = (task["queue"], task["priority"], task["max_attempts"], task["timeout_seconds"])
    assert got == ("default", "high", 3, 30)
    explicit = {"priority": "low", "max_attempts": 5, "timeout_seconds": 10}
    status, task = dev.request(
        "POST", "/v1/tasks", {"name": "typed_add", "payload": {"a": 1, "b": 2}, **explicit}
    )
    assert status == 202, task
    assert {k: task[k] for k in explicit} == explicit
    # typed_elsewhere's own queue is one this stack does not have: the task's default
    # is what makes this a 422, and an explicit queue wins over it.
    status, body = dev.request("POST", "/v1/tasks", {"name": "typed_elsewhere"})
    assert status == 422 and body["errors"][0]["field"] == "queue", body
    assert "'reports'" in body["message"]
    status, task = dev.request("POST", "/v1/tasks", {"name": "typed_elsewhere", "queue": "default"})
    assert (status, task["queue"]) == (202, "default")


def test_a_payload_that_does_not_fit_the_model_is_a_400_naming_the_field(dev: DevStack) -> None:
    status, body = dev.request("POST", "/v1/tasks", {"name": "typed_add", "payload": {"a": 1}})
    assert status == 400, body
    assert body["errors"] == [{"field": "payload.b", "message": "Field required"}]
    assert "payload.b: Field required" in body["message"]
    batch = {"tasks": [{"name": "typed_add", "payload": {"a": 1, "b": 2}}, {"name": "typed_add"}]}
    status, body = dev.request("POST", "/v1/tasks/batch", batch)
    assert status == 400 and body["errors"][0]["field"] == "tasks[1].payload", body


def test_enqueue_returns_a_handle_whose_result_waits_for_the_outcome(dev: DevStack) -> None:
    client = Client(dev.api_url, dev.api_key)
    assert typed_add.enqueue(a=1, b=2, client=client).result(timeout=30) == {"total": 3}
    with use_client(client):
        handle = typed_add.enqueue(AddIn(a=2, b=3))
        assert handle.get().priority == "high"  # the task's option, applied by the SDK
        assert handle.result(timeout=30) == {"total": 5}
        with pytest.raises(stratoq.TaskFailed) as failed:
            typed_refuse.enqueue({"a": 1, "b": 1}).result(timeout=30)
        task = failed.value.task
        assert (task.status, task.attempts, task.errors[0].kind) == ("failed", 1, "fail")
        later = typed_add.with_options(delay_seconds=600).enqueue(a=1, b=1)
        with pytest.raises(TimeoutError):
            later.result(timeout=0.5)
        assert later.get().status == "scheduled"
        with pytest.raises(stratoq.InvalidRequestError) as refused:
            typed_add.enqueue(a=1)
        assert refused.value.field == "payload.b"
        queued = typed_elsewhere.with_options(queue="default").enqueue("x").result(timeout=30)
        assert queued == "x"
