"""Pausing a queue or a task name against the emulator (issue 19, item 4): over HTTP
(a gateway on a loopback port, the real authorizer and keys) and through Worker.process,
the one code path of Lambda and pollers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from stratoq import Client
from stratoq.adapters import pauses as pause_store
from stratoq.adapters.pauses import PauseStore
from stratoq.adapters.transport import Outgoing, TaskMessage
from stratoq.core.clock import now_ms
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.pauses import PauseCache
from stratoq.core.settings import Settings
from stratoq.sdk.client import ApiError
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Action
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.gateway import serve_api
from tests.support.pump import apply, pump_until_final


@dataclass
class Api:
    url: str
    services: Services
    operator: Client

    def client(self, tenant: str, *scopes: str) -> Client:
        key, _ = self.services.keys.create(tenant, list(scopes), "test")
        return Client(self.url, key)


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    with serve_api(settings) as served:
        yield Api(served.url, served.services, Client(served.url, served.key))


@pytest.fixture
def worker(core: Enqueuer) -> Worker:
    # TTL 0: every message sees the table as it is (the TTL bound is a unit test's).
    cache = PauseCache(PauseStore(core.store.client, core.store.table).read, ttl_ms=0)
    return Worker(core.store, core.transport, InlineRunner(), pauses=cache)


def one_pass(core: Enqueuer, worker: Worker) -> list[str]:
    """Receive what is visible now and process it; the statuses of what was handled."""
    statuses = []
    for d in core.transport.receive("default", 10, 1, 30):
        disposition = worker.process(d)
        apply(core, d, disposition)
        statuses.append(disposition.status)
    return statuses


def state(core: Enqueuer, task_id: str) -> tuple[TaskStatus, int]:
    task = core.store.get(task_id)
    assert task is not None
    return task.status, task.attempts


def test_a_paused_queue_hands_tasks_back_unspent_and_runs_them_once_resumed(
    api: Api, core: Enqueuer, worker: Worker
) -> None:
    assert api.operator.pause_queue("default") == {
        "kind": "queue",
        "name": "default",
        "paused": True,
        "changed": True,
    }
    tid = core.enqueue(TaskRequest(name="echo", payload={"n": 1})).task.id
    assert one_pass(core, worker) == ["paused"]
    assert state(core, tid) == (TaskStatus.QUEUED, 0)
    # It comes back (1-2 s later, carrying when its wait began) and is handed back again.
    deadline = time.monotonic() + 10
    seen: list[str] = []
    while not seen and time.monotonic() < deadline:
        deliveries = core.transport.receive("default", 1, 1, 30)
        for d in deliveries:
            assert TaskMessage.decode(d.body).waiting_since_ms is not None
            disposition = worker.process(d)
            apply(core, d, disposition)
            seen.append(disposition.status)
    assert seen == ["paused"]
    assert state(core, tid) == (TaskStatus.QUEUED, 0)
    assert api.operator.resume_queue("default")["changed"] is True
    [done] = pump_until_final(core, worker, [tid])
    assert (done.status, done.attempts, done.result) == (TaskStatus.SUCCEEDED, 1, {"n": 1})


def test_a_paused_task_name_holds_only_that_name_on_every_queue(
    api: Api, core: Enqueuer, worker: Worker
) -> None:
    api.operator.pause_task_name("echo")
    held = core.enqueue(TaskRequest(name="echo", payload=1)).task.id
    free = core.enqueue(TaskRequest(name="sleep", payload={"seconds": 0})).task.id
    [ran] = pump_until_final(core, worker, [free])
    assert ran.status is TaskStatus.SUCCEEDED
    assert state(core, held) == (TaskStatus.QUEUED, 0)
    assert api.operator.paused() == {"queues": [], "task_names": ["echo"]}
    api.operator.resume_task_name("echo")
    [done] = pump_until_final(core, worker, [held])
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 1)


def test_a_message_without_a_name_of_a_paused_name_is_given_back_unspent(
    api: Api, core: Enqueuer, worker: Worker
) -> None:
    # Sent before names travelled in messages: only the claim tells the name.
    api.operator.pause_task_name("echo")
    task, _ = core.store.create(core.build(TaskRequest(name="echo")), now_ms())
    core.transport.send([Outgoing("default", TaskMessage(task.id, task.tenant))])
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert (disposition.action, disposition.status) == (Action.ACK, "paused")
    apply(core, d, disposition)
    after = core.store.get(task.id)
    assert after is not None
    assert (after.status, after.attempts, after.errors) == (TaskStatus.QUEUED, 0, [])


def test_a_delayed_task_of_a_paused_queue_stays_delayed_until_due(
    api: Api, core: Enqueuer, worker: Worker
) -> None:
    api.operator.pause_queue("default")
    tid = core.enqueue(TaskRequest(name="echo", delay_seconds=2)).task.id
    deadline = time.monotonic() + 15
    statuses: list[str] = []
    while "paused" not in statuses and time.monotonic() < deadline:
        statuses += one_pass(core, worker)
    assert statuses == ["paused"]  # not received before it was due, handed back after
    assert state(core, tid) == (TaskStatus.SCHEDULED, 0)  # its status, as it was


def test_get_queues_shows_what_is_paused(api: Api) -> None:
    api.operator.pause_queue("default")
    api.operator.pause_task_name("billing.charge:v2")
    again = api.operator.pause_queue("default")
    assert (again["paused"], again["changed"]) == (True, False)
    rows = api.operator.queues()
    assert {(r["priority"], r["paused"]) for r in rows if r["queue"] == "default"} == {
        ("high", True),
        ("default", True),
        ("low", True),
    }
    reader = api.client("acme", "tasks:read")  # any tenant sees why its tasks wait
    assert reader.paused() == {"queues": ["default"], "task_names": ["billing.charge:v2"]}
    assert api.operator.resume_task_name("billing.charge:v2")["changed"] is True
    assert api.operator.resume_task_name("billing.charge:v2")["changed"] is False
    assert api.operator.paused() == {"queues": ["default"], "task_names": []}


def test_only_the_operators_admin_keys_pause(api: Api) -> None:
    for client in (api.client("acme", "admin"), api.client("default", "tasks:write")):
        for call in (client.pause_queue, client.resume_queue):
            with pytest.raises(ApiError) as info:
                call("default")
            assert info.value.status == 403
        with pytest.raises(ApiError) as info:
            client.pause_task_name("echo")
        assert info.value.status == 403
    # Not even an unknown queue's name leaks to them.
    with pytest.raises(ApiError) as info:
        api.client("acme", "admin").pause_queue("nope")
    assert info.value.status == 403
    assert api.operator.paused() == {"queues": [], "task_names": []}


def test_bad_names_and_unknown_queues_are_refused_naming_them(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ApiError) as info:
        api.operator.pause_queue("nope")
    assert (info.value.status, info.value.message) == (404, "no queue 'nope'")
    with pytest.raises(ApiError) as info:
        api.operator.pause_queue("Not_A_Queue")
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors or []] == ["queue"]
    with pytest.raises(ApiError) as info:
        api.operator.resume_task_name("-dash-first")
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors or []] == ["name"]
    # The pause item stays small: past its cap a pause is refused (400), a repeat is not.
    monkeypatch.setattr(pause_store, "MAX_PAUSED", 2)
    api.operator.pause_task_name("a")
    api.operator.pause_task_name("b")
    with pytest.raises(ApiError) as info:
        api.operator.pause_task_name("c")
    assert info.value.status == 400
    assert "2 task names are paused already" in info.value.message
    assert api.operator.pause_task_name("a")["changed"] is False
    assert api.operator.paused()["task_names"] == ["a", "b"]
