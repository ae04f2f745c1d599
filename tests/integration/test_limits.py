"""Concurrency and rate limits against the emulator (issue 19, items 1 and 2): the
conditional writes of slots and buckets, Worker.process (the one code path of Lambda
and pollers) waiting unspent, the operator's limits and bad input over HTTP, and no
extra request for a task without limits."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from stratoq import Client
from stratoq.adapters.limits import BucketStore, LimitStore, Slot, SlotStore
from stratoq.adapters.pauses import PauseStore
from stratoq.adapters.transport import TaskMessage
from stratoq.core.clock import now_ms
from stratoq.core.limits import NO_LIMITS, TtlCache, parse_rate
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.pauses import PauseCache
from stratoq.core.settings import Settings
from stratoq.sdk.client import ApiError
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Action
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.integration.test_rate_window import tokens
from tests.support.gateway import serve_api
from tests.support.pump import apply, pump_until_final


@pytest.fixture
def worker(core: Enqueuer) -> Worker:
    # TTL 0: every message sees the limits as they are (the TTL is a unit test's).
    db, table = core.store.client, core.store.table
    return Worker(
        core.store,
        core.transport,
        InlineRunner(),
        pauses=PauseCache(PauseStore(db, table).read, ttl_ms=0),
        limits=TtlCache(LimitStore(db, table).read, NO_LIMITS, ttl_ms=0),
    )


@pytest.fixture
def slots(core: Enqueuer) -> SlotStore:
    return SlotStore(core.store.client, core.store.table)


@pytest.fixture
def operator(settings: Settings) -> Iterator[Client]:
    with serve_api(settings) as served:
        yield Client(served.url, served.key)


def race(*calls: Any) -> list[Any]:
    """Run the calls in threads released at once; their results in order."""
    gate = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        gate.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


# ------------------------------------------------------------------ slots
def test_two_holders_racing_for_the_last_slot_one_wins(slots: SlotStore) -> None:
    now = now_ms()
    for round_ in range(5):
        scope = f"key:t:race-{round_}"
        assert slots.acquire(scope, 2, "first", now + 60_000, now, _rng()) is not None
        got = race(
            *(
                lambda who=who, scope=scope: slots.acquire(scope, 2, who, now + 60_000, now, _rng())
                for who in ("b", "c", "d")
            )
        )
        winners = [g for g in got if isinstance(g, Slot)]
        assert len(winners) == 1, got
        assert len(slots.holders(scope, 2)) == 2


def test_an_expired_holders_slot_is_taken_over_and_stays_the_new_holders(
    slots: SlotStore,
) -> None:
    now = now_ms()
    old = slots.acquire("key:t:crash", 1, "old", now + 1_000, now, _rng())
    assert old is not None
    assert slots.acquire("key:t:crash", 1, "new", now + 60_000, now + 999, _rng()) is None
    new = slots.acquire("key:t:crash", 1, "new", now + 60_000, now + 1_000, _rng())
    assert new is not None and new.index == old.index
    # The crashed holder, back late, neither renews nor frees what is not its own.
    assert not slots.extend(old, now + 90_000)
    assert not slots.release(old)
    assert slots.holders("key:t:crash", 1) == {0: now + 60_000}
    assert slots.extend(new, now + 90_000) and slots.release(new)
    assert slots.holders("key:t:crash", 1) == {}


# ------------------------------------------------------------------ buckets
def test_racing_takers_of_one_bucket_each_get_their_own_token(core: Enqueuer) -> None:
    buckets = BucketStore(core.store.client, core.store.table)
    rate, now = parse_rate("10/s"), now_ms()
    waits = race(*(lambda: [buckets.reserve("key:t:api", rate, now) for _ in range(5)],) * 4)
    granted = sorted(w for batch in waits for w in batch if w is not None)
    # No token twice: every take has its own time, 100 ms apart from the first; the
    # increments of a busy bucket never lose a race, so none had to give up.
    assert granted == [100 * i for i in range(20)]
    one_more = buckets.reserve("key:t:api", rate, now)
    assert one_more == 100 * len(granted)


# ------------------------------------------------------------------ the worker
def one_pass(core: Enqueuer, worker: Worker) -> list[str]:
    statuses = []
    for d in core.transport.receive("default", 10, 1, 30):
        disposition = worker.process(d)
        apply(core, d, disposition)
        statuses.append(disposition.status)
    return statuses


def test_a_task_with_no_free_slot_waits_unspent_and_shows_why(
    core: Enqueuer, worker: Worker, slots: SlotStore, operator: Client
) -> None:
    now = now_ms()
    hold = slots.acquire("key:default:cust-1", 1, "someone", now + 60_000, now, _rng())
    assert hold is not None
    request = TaskRequest(name="echo", payload=1, concurrency_key="cust-1", max_concurrency=1)
    tid = core.enqueue(request).task.id
    assert one_pass(core, worker) == ["concurrency"]
    task = operator.get(tid)
    assert (task.status, task.attempts, task.waiting_for) == (TaskStatus.QUEUED, 0, "concurrency")
    assert (task.concurrency_key, task.max_concurrency) == ("cust-1", 1)
    assert slots.release(hold)
    [done] = pump_until_final(core, worker, [tid])
    assert (done.status, done.attempts, done.waiting_for) == (TaskStatus.SUCCEEDED, 1, None)
    assert slots.holders("key:default:cust-1", 1) == {}  # released at the end


def test_rate_limited_tasks_are_sent_for_their_token_and_never_handed_back(
    core: Enqueuer, worker: Worker
) -> None:
    request = TaskRequest(name="echo", payload=1, rate_limit="1/s", rate_limit_key="api")
    created = [r.task for r in core.enqueue_many([request] * 3)]
    # One write took the 3 tokens; the messages wait in SQS for theirs (less the
    # fraction of a second a worker sleeps out).
    assert [t.waiting_for for t in created] == [None, "rate_limited", "rate_limited"]
    due = tokens(core, "key:default:api", 3, 1000)
    ids = [t.id for t in created]
    statuses: list[str] = []
    while len([s for s in statuses if s == "succeeded"]) < 3:
        statuses += one_pass(core, worker)
    assert statuses == ["succeeded"] * 3
    done = [core.store.get(i) for i in ids]
    assert all(t and t.attempts == 1 and t.waiting_for is None for t in done)
    starts = [round(t.started_at.timestamp() * 1000) for t in done if t and t.started_at]
    assert all(start >= token for start, token in zip(starts, due, strict=True))


def test_an_enqueuer_that_cannot_take_tokens_leaves_them_to_the_worker(
    core: Enqueuer, worker: Worker
) -> None:
    # As the scheduler's role on AWS, which may not update the tasks table.
    core.buckets = BucketStore(core.store.client, "no-such-table")
    # Tokens 2 s apart: the second is handed back (one within a second is slept out).
    request = TaskRequest(name="echo", rate_limit="30/m")
    ids = [r.task.id for r in core.enqueue_many([request] * 2)]
    assert sorted(one_pass(core, worker)) == ["rate_limited", "succeeded"]
    done = pump_until_final(core, worker, ids, timeout=20)
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in done)


def test_a_token_due_within_ms_is_waited_for_in_the_worker_not_by_a_delay(
    core: Enqueuer, worker: Worker
) -> None:
    created = [
        r.task for r in core.enqueue_many([TaskRequest(name="echo", rate_limit="100/s")] * 3)
    ]
    assert [t.waiting_for for t in created] == [None] * 3  # sent at once, not a second late
    statuses: list[str] = []
    while len(statuses) < 3:
        statuses += one_pass(core, worker)
    assert statuses == ["succeeded"] * 3
    done = [core.store.get(t.id) for t in created]
    starts = sorted(t.started_at.timestamp() for t in done if t and t.started_at)
    assert starts[1] - starts[0] >= 0.009 and starts[2] - starts[1] >= 0.009


def test_an_operator_rate_limit_hands_tasks_back_until_their_token(
    core: Enqueuer, worker: Worker, operator: Client
) -> None:
    # Tokens 2 s apart, so the second and third are handed back (within a second of its
    # token, a task is slept out in the worker instead).
    operator.limit_queue("default", rate_limit="30/m")
    ids = [r.task.id for r in core.enqueue_many([TaskRequest(name="echo")] * 3)]
    assert sorted(one_pass(core, worker)) == ["rate_limited", "rate_limited", "succeeded"]
    waiting = [t for i in ids if (t := core.store.get(i)) and t.status is TaskStatus.QUEUED]
    assert [t.waiting_for for t in waiting] == ["rate_limited"] * 2
    done = pump_until_final(core, worker, ids, timeout=20)
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in done)
    # Taken by the worker in the order it met them: the n-th start is at the n-th token
    # or after, never before.
    due = tokens(core, "queue:default", 3, 2000)
    starts = sorted(round(t.started_at.timestamp() * 1000) for t in done if t.started_at)
    assert all(start >= token for start, token in zip(starts, due, strict=True))


def test_limits_that_cannot_be_read_give_the_message_back_for_a_second(
    core: Enqueuer, worker: Worker
) -> None:
    worker.flow.slots = SlotStore(core.store.client, "no-such-table")  # DynamoDB says no
    tid = core.enqueue(TaskRequest(name="echo", concurrency_key="c", max_concurrency=1)).task.id
    [d] = core.transport.receive("default", 1, 1, 30)
    disposition = worker.process(d)
    assert (disposition.action, disposition.delay) == (Action.RELEASE, 1)
    assert disposition.status == "limits_unavailable"
    task = core.store.get(tid)
    assert task is not None and (task.status, task.attempts) == (TaskStatus.QUEUED, 0)


def test_a_task_without_limits_makes_no_extra_request(core: Enqueuer, worker: Worker) -> None:
    calls: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    events = core.store.client.meta.events
    limited = core.enqueue(TaskRequest(name="echo", max_concurrency=5)).task.id
    plain = core.enqueue(TaskRequest(name="echo")).task.id
    events.register("before-call.dynamodb", count)
    try:
        by_task: dict[str, list[str]] = {}
        for d in core.transport.receive("default", 10, 1, 30):
            calls.clear()
            apply(core, d, worker.process(d))
            by_task[TaskMessage.decode(d.body).task_id] = list(calls)
    finally:
        events.unregister("before-call.dynamodb", count)
    # The caches (TTL 0 here) read the pause and limits items per message; beyond
    # them a plain task costs its claim and its outcome only.
    reads = ["GetItem", "GetItem"]
    assert by_task[plain] == [*reads, "UpdateItem", "UpdateItem"]
    # With a limit: a read of the slots, the slot taken and freed.
    assert by_task[limited] == [
        *reads,
        "BatchGetItem",
        "UpdateItem",
        "UpdateItem",
        "UpdateItem",
        "UpdateItem",
    ]


# ------------------------------------------------------------------ operator limits
def test_the_operator_limits_a_queue_for_every_tenant(
    core: Enqueuer, worker: Worker, slots: SlotStore, operator: Client
) -> None:
    assert operator.limit_queue("default", max_concurrency=1) == {
        "kind": "queue",
        "name": "default",
        "max_concurrency": 1,
        "rate_limit": None,
    }
    operator.limit_task_name("billing.charge:v2", rate_limit="1000 / h")
    assert operator.limits() == [
        {"kind": "queue", "name": "default", "max_concurrency": 1, "rate_limit": None},
        {
            "kind": "task_name",
            "name": "billing.charge:v2",
            "max_concurrency": None,
            "rate_limit": "1000/h",
        },
    ]
    now = now_ms()
    hold = slots.acquire("queue:default", 1, "someone", now + 60_000, now, _rng())
    assert hold is not None
    tid = core.enqueue(TaskRequest(name="echo"), "another-tenant").task.id
    assert one_pass(core, worker) == ["concurrency"]
    assert operator.unlimit_queue("default")["removed"] is True
    assert operator.unlimit_queue("default")["removed"] is False
    [done] = pump_until_final(core, worker, [tid])
    assert done.status is TaskStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PUT", "/v1/queues/default/limits", {"max_concurrency": 0}, "max_concurrency"),
        ("PUT", "/v1/queues/default/limits", {"rate_limit": "10/w"}, "rate_limit"),
        ("PUT", "/v1/tasks/names/x/limits", {"rate_limit": "fast"}, "rate_limit"),
        ("POST", "/v1/tasks", {"name": "echo", "max_concurrency": 0}, "max_concurrency"),
        ("POST", "/v1/tasks", {"name": "echo", "rate_limit": "3/fortnight"}, "rate_limit"),
        (
            "POST",
            "/v1/tasks",
            {"name": "echo", "concurrency_key": "k" * 257, "max_concurrency": 1},
            "concurrency_key",
        ),
        # A key limits nothing without its limit.
        ("POST", "/v1/tasks", {"name": "echo", "concurrency_key": "c"}, "max_concurrency"),
        ("POST", "/v1/tasks", {"name": "echo", "rate_limit_key": "c"}, "rate_limit"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(
    settings: Settings, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    with serve_api(settings) as served:
        headers = {"x-api-key": served.key, "content-type": "application/json"}
        resp = urllib3.request(method, served.url + path, json=body, headers=headers)
    answer = json.loads(resp.data)
    # Field checks of the body are 422 as every other field's; the key-needs-its-limit
    # check, which the task's options take part in, is 400.
    assert resp.status in (400, 422), answer
    assert [e["field"] for e in answer["errors"]] == [field], answer
    assert field in answer["message"]


def test_limits_of_an_unknown_queue_are_404(operator: Client) -> None:
    with pytest.raises(ApiError) as info:
        operator.limit_queue("nope", max_concurrency=1)
    assert info.value.status == 404


def test_only_the_operators_admin_keys_set_limits(settings: Settings) -> None:
    with serve_api(settings) as served:
        key, _ = served.services.keys.create("acme", ["admin"], "tenant admin")
        tenant = Client(served.url, key)
        with pytest.raises(ApiError) as info:
            tenant.limit_queue("default", max_concurrency=1)
        assert info.value.status == 403
        assert tenant.limits() == []


def _rng() -> random.Random:
    return random.Random()
