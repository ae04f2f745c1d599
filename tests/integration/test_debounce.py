"""Debounce against the emulator (issue 19, item 5): of a tenant's tasks enqueued with
one `debounce_key` only the last runs, the others end `cancelled` naming it; the
worker's check at claim; tenants apart; a started task left to finish; bad input over
HTTP; the SDK and the CLI through the real API; no extra request without a key."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
import urllib3

from stratoq import Client
from stratoq.adapters.debounce import DebounceStore
from stratoq.adapters.pauses import PauseStore
from stratoq.adapters.transport import TaskMessage
from stratoq.cli import main as cli
from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.core.pauses import PauseCache
from stratoq.core.settings import Settings
from stratoq.services.bridge import Bridge, BrokerMessage
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.gateway import serve_api
from tests.support.pump import apply, pump_until_final


@pytest.fixture
def worker(core: Enqueuer) -> Worker:
    pauses = PauseCache(PauseStore(core.store.client, core.store.table).read, ttl_ms=0)
    return Worker(core.store, core.transport, InlineRunner(), pauses=pauses)


def debounced(key: str, n: int, seconds: int = 1, name: str = "echo") -> TaskRequest:
    return TaskRequest(name=name, payload={"n": n}, debounce_key=key, debounce_seconds=seconds)


def reason(task: Task) -> str:
    """A cancelled task's reason: its last error entry (kind `cancelled`)."""
    assert task.errors and task.errors[-1].kind == "cancelled", task
    return task.errors[-1].message


def test_of_five_enqueues_of_one_key_only_the_last_runs(core: Enqueuer, worker: Worker) -> None:
    tasks = [core.enqueue(debounced("burst", n)).task for n in range(5)]
    last = tasks[-1]
    # The last waits out its window after its own enqueue.
    assert last.status is TaskStatus.SCHEDULED and last.debounce_seconds == 1
    assert last.scheduled_for is not None and last.scheduled_for > last.created_at
    # Each enqueue cancelled the one before it at once, naming itself.
    for older, newer in itertools.pairwise(tasks):
        now = core.store.get(older.id)
        assert now is not None and now.status is TaskStatus.CANCELLED
        assert reason(now) == f"debounced: superseded by {newer.id}"
    done = pump_until_final(core, worker, [t.id for t in tasks])
    assert [t.status for t in done] == [TaskStatus.CANCELLED] * 4 + [TaskStatus.SUCCEEDED]
    assert done[-1].result == {"n": 4}
    assert [t.attempts for t in done] == [0, 0, 0, 0, 1]


def test_tenants_never_debounce_each_other(core: Enqueuer, worker: Worker) -> None:
    a = core.enqueue(debounced("shared", 1), tenant="tenant-a").task
    b = core.enqueue(debounced("shared", 2), tenant="tenant-b").task
    assert core.store.get(a.id) is not None
    done = pump_until_final(core, worker, [a.id, b.id])
    assert [t.status for t in done] == [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED]


def test_a_task_that_started_is_left_to_finish_and_both_run(core: Enqueuer, worker: Worker) -> None:
    first = core.enqueue(debounced("slow", 1, name="sleep")).task
    # `sleep` takes its payload's seconds: 1 by default, long enough to be caught running.
    background = threading.Thread(target=pump_until_final, args=(core, worker, [first.id]))
    background.start()
    deadline = time.monotonic() + 20
    while (t := core.store.get(first.id)) is not None and t.status is not TaskStatus.RUNNING:
        assert time.monotonic() < deadline, t
        time.sleep(0.01)
    second = core.enqueue(debounced("slow", 2, name="sleep")).task
    background.join(30)
    done = pump_until_final(core, worker, [first.id, second.id])
    assert [t.status for t in done] == [TaskStatus.SUCCEEDED, TaskStatus.SUCCEEDED]
    assert done[0].errors == [] and done[0].cancel_requested_at is None


def test_the_worker_cancels_a_task_its_key_no_longer_names(core: Enqueuer, worker: Worker) -> None:
    # An enqueuer that wrote the debounce item and died before cancelling the task it
    # superseded: the item names a later task, the earlier one is still scheduled.
    task = core.enqueue(debounced("crashed", 1)).task
    later = "f" * 32
    items = DebounceStore(core.store.client, core.store.table)
    assert items.claim("default", "crashed", later, 2**62, 0).won
    assert core.store.get(task.id).status is TaskStatus.SCHEDULED  # type: ignore[union-attr]
    [done] = pump_until_final(core, worker, [task.id])
    assert done.status is TaskStatus.CANCELLED and done.attempts == 0 and done.result is None
    assert reason(done) == f"debounced: superseded by {later}"


def test_an_older_enqueue_that_writes_last_supersedes_itself(core: Enqueuer) -> None:
    # Two enqueues of one key whose item writes land out of order: the later enqueue
    # keeps the item, and the older one learns that it is the superseded one.
    newer = core.enqueue(debounced("race", 2)).task
    built = core.build(debounced("race", 1))
    older = built.model_copy(update={"created_at": newer.created_at.replace(year=2000)})
    core.store.create(older, 0)
    core.debouncer.stored([older])
    assert reason(core.store.get(older.id)) == f"debounced: superseded by {newer.id}"  # type: ignore[arg-type]
    assert core.store.get(newer.id).status is TaskStatus.SCHEDULED  # type: ignore[union-attr]


def test_in_a_batch_the_last_of_a_key_wins(core: Enqueuer, worker: Worker) -> None:
    results = core.enqueue_many(
        [
            debounced("batch", 1),
            TaskRequest(name="echo"),
            debounced("batch", 2),
            debounced("batch", 3),
        ]
    )
    ids = [r.task.id for r in results]
    done = pump_until_final(core, worker, ids)
    assert [t.status for t in done] == [
        TaskStatus.CANCELLED,
        TaskStatus.SUCCEEDED,
        TaskStatus.CANCELLED,
        TaskStatus.SUCCEEDED,
    ]
    assert reason(done[0]) == reason(done[2]) == f"debounced: superseded by {ids[3]}"


def test_a_task_without_a_debounce_key_makes_no_extra_request(
    core: Enqueuer, worker: Worker
) -> None:
    calls: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    events = core.store.client.meta.events
    events.register("before-call.dynamodb", count)
    try:
        plain = core.enqueue(TaskRequest(name="echo")).task.id
        enqueued_plain = list(calls)
        calls.clear()
        keyed = core.enqueue(debounced("counted", 1)).task.id
        enqueued_keyed = list(calls)
        by_task: dict[str, list[str]] = {}
        deadline = time.monotonic() + 20
        while len(by_task) < 2 and time.monotonic() < deadline:
            for d in core.transport.receive("default", 10, 1, 30):
                calls.clear()
                apply(core, d, worker.process(d))
                by_task[TaskMessage.decode(d.body).task_id] = list(calls)
    finally:
        events.unregister("before-call.dynamodb", count)
    # A plain enqueue: its PutItem (and the events' subscription read); a debounced
    # one adds the debounce item's write, and nothing to cancel before it.
    assert enqueued_plain[0] == "PutItem" and "UpdateItem" not in enqueued_plain
    assert Counter(enqueued_keyed) - Counter(enqueued_plain) == Counter(["UpdateItem"])
    # At the worker a plain task costs its reads, claim and outcome; a debounced task's
    # first attempt adds one read of its key's item (GetItem), between claim and run.
    assert by_task[plain].count("UpdateItem") == 2, by_task
    assert Counter(by_task[keyed]) - Counter(by_task[plain]) == Counter(["GetItem"]), by_task
    assert Counter(by_task[plain]) - Counter(by_task[keyed]) == Counter(), by_task


# ------------------------------------------------------------------ over HTTP
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/tasks",
            {"name": "echo", "debounce_key": "k", "debounce_seconds": 0},
            "debounce_seconds",
        ),
        (
            "/v1/tasks",
            {"name": "echo", "debounce_key": "k" * 257, "debounce_seconds": 5},
            "debounce_key",
        ),
        # A key without a window (here or in the task's options), and a window alone.
        ("/v1/tasks", {"name": "echo", "debounce_key": "k"}, "debounce_seconds"),
        ("/v1/tasks", {"name": "echo", "debounce_seconds": 5}, "debounce_key"),
        (
            "/v1/tasks/batch",
            {"tasks": [{"name": "echo"}, {"name": "echo", "debounce_seconds": 90000}]},
            "tasks.1.debounce_seconds",
        ),
        (
            "/v1/workflows",
            {"nodes": [{"name": "a", "task": "echo", "debounce_key": "k"}]},
            "nodes.0.debounce_key",
        ),
    ],
)
def test_bad_debounce_input_is_refused_naming_the_field(
    settings: Settings, path: str, body: dict[str, Any], field: str
) -> None:
    with serve_api(settings) as served:
        headers = {"x-api-key": served.key, "content-type": "application/json"}
        resp = urllib3.request("POST", served.url + path, json=body, headers=headers)
    answer = json.loads(resp.data)
    # Field checks of the body are 422, as the limits' are; the key-needs-its-window
    # check, which the task's options take part in, is 400.
    assert resp.status in (400, 422), answer
    assert [e["field"] for e in answer["errors"]] == [field], answer


def test_a_schedule_cannot_debounce(settings: Settings) -> None:
    with serve_api(settings) as served:
        headers = {"x-api-key": served.key, "content-type": "application/json"}
        body = {
            "expression": "rate(5 minutes)",
            "task": {"name": "echo", "debounce_key": "k", "debounce_seconds": 5},
        }
        resp = urllib3.request(
            "PUT", served.url + "/v1/schedules/bounced", json=body, headers=headers
        )
    answer = json.loads(resp.data)
    assert resp.status == 400, answer
    assert [e["field"] for e in answer["errors"]] == ["task.debounce_key"], answer


def test_the_sdk_and_the_cli_debounce_through_the_api(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_api(settings) as served:
        client = Client(served.url, served.key)
        first = client.enqueue("echo", {"n": 1}, debounce_key="sdk", debounce_seconds=30)
        assert (first.debounce_key, first.debounce_seconds) == ("sdk", 30)
        assert first.status == "scheduled"
        argv = ["--api-url", served.url, "--api-key", served.key, "enqueue", "echo"]
        code = cli.main([*argv, "--debounce-key", "sdk", "--debounce-seconds", "30"])
        assert code == 0
        second = json.loads(capsys.readouterr().out)
        assert (second["debounce_key"], second["debounce_seconds"]) == ("sdk", 30)
        shown = client.get(first.id)
        assert shown.status == "cancelled"
        assert shown.errors[-1].kind == "cancelled"
        assert shown.errors[-1].message == f"debounced: superseded by {second['id']}"
        # Another tenant's key of the same name is its own.
        other_key, _ = served.services.keys.create("other", ["admin"], "other")
        other = Client(served.url, other_key).enqueue(
            "echo", debounce_key="sdk", debounce_seconds=30
        )
        assert client.get(second["id"]).status == "scheduled"
        assert other.status == "scheduled"


def test_a_bridge_skips_a_debounced_message_and_enqueues_the_rest(core: Enqueuer) -> None:
    bridge = Bridge(core, "default", "kafka")
    bodies = [
        {"name": "echo", "payload": 1, "debounce_key": "k", "debounce_seconds": 5},
        {"name": "echo", "payload": 2},
    ]
    messages = [
        BrokerMessage(json.dumps(b).encode(), f"m{i}", f"t/0/{i}") for i, b in enumerate(bodies)
    ]
    result = bridge.submit(messages)
    assert [(s.ref, s.reason) for s in result.skipped] == [("t/0/0", "rejected")]
    assert "debounce_key" in result.skipped[0].detail
    assert [e.task.payload for e in result.enqueued] == [2]
