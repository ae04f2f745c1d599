"""Waiting for a task's end over HTTP (issue 21, item 3): `GET /v1/tasks/{id}?wait=`, the
SDK's `Client.wait` and `stratoq wait` on it, against the emulator through a gateway on
a loopback port (the real authorizer and keys) that counts the requests it serves."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import urllib3

from stratoq import Client
from stratoq.api.app import ApiFunction
from stratoq.core.errors import WaitTimeout
from stratoq.core.models import TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.conftest import PYTHON, subprocess_env
from tests.support.gateway import serve_api
from tests.support.procs import wait_for
from tests.support.pump import pump_until_final


@dataclass
class Counting:
    """The API function, noting every request it serves: (method, path, query)."""

    api: ApiFunction
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        query = event.get("queryStringParameters") or {}
        self.seen.append((event["httpMethod"], event["path"], query))
        return self.api(event, context)

    def reads_of(self, task_id: str) -> list[dict[str, str]]:
        return [q for m, p, q in self.seen if (m, p) == ("GET", f"/v1/tasks/{task_id}")]


@dataclass
class Api:
    url: str
    key: str
    services: Services
    counter: Counting
    http: urllib3.PoolManager

    def client(self) -> Client:
        return Client(self.url, self.key)

    def get(self, path: str, key: str | None = None) -> tuple[int, Any]:
        resp = self.http.request("GET", self.url + path, headers={"x-api-key": key or self.key})
        return resp.status, json.loads(resp.data)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    counters: list[Counting] = []

    def count(function: ApiFunction) -> Counting:
        counters.append(Counting(function))
        return counters[0]

    with serve_api(settings, wrap=count) as served:
        key, _ = served.services.keys.create("acme", ["tasks:write"], "test")
        yield Api(served.url, key, served.services, counters[0], urllib3.PoolManager(timeout=40))


def in_background(core: Enqueuer, task_ids: list[str]) -> threading.Thread:
    """Run the tasks to their end from another thread (a worker beside the API)."""
    worker = Worker(core.store, core.transport, InlineRunner())
    thread = threading.Thread(target=pump_until_final, args=(core, worker, task_ids), daemon=True)
    thread.start()
    return thread


def test_a_wait_answers_once_the_task_ends(api: Api, core: Enqueuer) -> None:
    task = api.client().enqueue("echo", {"hi": 1})
    answers: list[tuple[int, Any]] = []
    waiting = threading.Thread(
        target=lambda: answers.append(api.get(f"/v1/tasks/{task.id}?wait=20")), daemon=True
    )
    waiting.start()
    wait_for(lambda: any(q.get("wait") for q in api.counter.reads_of(task.id)), 10, "the wait")
    in_background(core, [task.id])
    # Well before the 20 s the request asked for: the end of the task ended the wait.
    [(status, body)] = wait_for(lambda: answers, 12, "the waiting request's answer")
    assert status == 200, body
    assert (body["status"], body["result"]) == ("succeeded", {"hi": 1})


def test_a_wait_on_an_unfinished_task_answers_it_unfinished_when_the_time_is_up(
    api: Api,
) -> None:
    task = api.client().enqueue("echo", 1)
    started = time.monotonic()
    status, body = api.get(f"/v1/tasks/{task.id}?wait=1.5")
    waited = time.monotonic() - started
    assert status == 200, body
    assert body["status"] == "queued"  # the caller tells "time up" from "done" by it
    assert 1.4 <= waited < 10


def test_other_requests_are_answered_while_one_waits(api: Api) -> None:
    task = api.client().enqueue("echo", 1)
    waiting = threading.Thread(target=api.get, args=(f"/v1/tasks/{task.id}?wait=5",))
    waiting.start()
    wait_for(lambda: any(q.get("wait") for q in api.counter.reads_of(task.id)), 10, "the wait")
    assert api.client().get(task.id).status is TaskStatus.QUEUED
    assert waiting.is_alive()  # answered while the wait was still on
    waiting.join(15)


def test_a_wait_on_another_tenants_task_is_a_404_at_once(api: Api) -> None:
    task = api.client().enqueue("echo", 1)
    other, _ = api.services.keys.create("globex", ["tasks:read"], "other")
    started = time.monotonic()
    status, body = api.get(f"/v1/tasks/{task.id}?wait=20", key=other)
    assert status == 404, body
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("value", ["-1", "20.5", "21", "soon", ""])
def test_a_bad_wait_is_refused_naming_it(api: Api, value: str) -> None:
    task = api.client().enqueue("echo", 1)
    status, body = api.get(f"/v1/tasks/{task.id}?wait={value}")
    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == ["wait"]


def test_the_sdk_waits_with_a_few_requests_not_a_polling_loop(api: Api, core: Enqueuer) -> None:
    client = api.client()
    task = client.enqueue("sleep", {"seconds": 3})
    in_background(core, [task.id])
    done = client.wait(task.id, timeout=60)
    assert done.status is TaskStatus.SUCCEEDED
    # Polling every 0.2 s took 15 requests and more for a task of 3 s.
    assert 1 <= len(api.counter.reads_of(task.id)) <= 3, api.counter.reads_of(task.id)


def test_the_sdk_wait_still_times_out_with_its_message(api: Api) -> None:
    client = api.client()
    task = client.enqueue("echo", 1)
    with pytest.raises(WaitTimeout, match=f"task {task.id} is still queued after 1.5 s"):
        client.wait(task.id, timeout=1.5)
    assert len(api.counter.reads_of(task.id)) <= 3


def stratoq(api: Api, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(settings, STRATOQ_API_URL=api.url, STRATOQ_API_KEY=api.key)
    return subprocess.run(
        [PYTHON, "-m", "stratoq", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_cli_waits_for_many_tasks_with_its_bar_and_few_requests(
    api: Api, core: Enqueuer, settings: Settings
) -> None:
    tasks = api.client().enqueue_many([{"name": "sleep", "payload": {"seconds": 1}}] * 3)
    in_background(core, [t.id for t in tasks])
    out = stratoq(api, settings, "wait", *[t.id for t in tasks], "--progress")
    assert out.returncode == 0, out.stderr
    assert "3/3 succeeded 3" in out.stderr
    assert [line.split()[1] for line in out.stdout.splitlines()] == ["succeeded"] * 3
    # About 3 s of tasks run one after another: a few waits, not 15 polling rounds.
    assert sum(len(api.counter.reads_of(t.id)) for t in tasks) <= 9


def test_the_cli_wait_times_out_as_before(api: Api, settings: Settings) -> None:
    task = api.client().enqueue("echo", 1)
    out = stratoq(api, settings, "wait", task.id, "--timeout", "1")
    assert out.returncode == 1
    assert out.stderr == "stratoq: 1 task(s) not finished after 1 s\n"
    out = stratoq(api, settings, "enqueue", "echo", "--wait", "1")
    assert out.returncode == 1
    assert "is still queued after 1.0 s" in out.stderr


def test_the_openapi_document_shows_the_wait_parameter(api: Api) -> None:
    status, spec = api.get("/v1/openapi.json")
    assert status == 200
    params = spec["paths"]["/v1/tasks/{task_id}"]["get"]["parameters"]
    [wait] = [p for p in params if p["name"] == "wait"]
    assert (wait["in"], wait["schema"]["minimum"], wait["schema"]["maximum"]) == ("query", 0, 20)
