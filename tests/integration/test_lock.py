"""Distributed locks against the emulator: the LockStore, task lock_key, stratoq.lock().

LockStore calls take an explicit `now`, so holds expire by passing a later value, never
by waiting. The worker tests use the real clock and poll for conditions.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from stratoq.adapters.locks import Acquired, Held, LockStore
from stratoq.adapters.store import Claimed
from stratoq.adapters.transport import Delivery
from stratoq.core.clock import now_ms
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.handlers.edge import entry
from stratoq.handlers.worker import WorkerFunction
from stratoq.local.esm import EventSourceMapping
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Action
from stratoq.services.leases import LeaseKeeper, Stop
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import apply, pump_until_final, queue_counts

NOW = 1_800_000_000_000  # fixed, and in the future so no TTL can remove items
TTL = 10_000
_de = TypeDeserializer()


@pytest.fixture
def locks(core: Enqueuer) -> LockStore:
    return LockStore(core.store.client, core.store.table)


@pytest.fixture
def worker(core: Enqueuer, locks: LockStore) -> Worker:
    return Worker(core.store, core.transport, InlineRunner(), locks=locks)


def acquired(locks: LockStore, name: str = "db", tenant: str = "t1", **kw: Any) -> Acquired:
    args: dict[str, Any] = {"owner": "a", "ttl_ms": TTL, "now": NOW, **kw}
    got = locks.acquire(tenant, name, **args)
    assert isinstance(got, Acquired), got
    return got


def raw(core: Enqueuer, key: str) -> dict[str, Any] | None:
    out = core.store.client.get_item(
        TableName=core.store.table, Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return {k: _de.deserialize(v) for k, v in out["Item"].items()} if "Item" in out else None


# ------------------------------------------------------------------ LockStore
def test_lock_is_exclusive_until_released(locks: LockStore) -> None:
    first = acquired(locks, owner="worker-1")
    refused = locks.acquire("t1", "db", "worker-2", TTL, NOW + 1)
    assert refused == Held(holder="worker-1", until_ms=NOW + TTL)
    assert locks.release(first, NOW + 2)
    second = acquired(locks, owner="worker-2", now=NOW + 3)
    assert second.token > first.token


def test_an_expired_hold_is_free_and_the_old_holder_is_fenced_off(
    core: Enqueuer, locks: LockStore
) -> None:
    old = acquired(locks, owner="slow")
    # Still held one millisecond before the end; free at the end, although the item is
    # still there (TTL has not removed it, and the emulator never will).
    assert isinstance(locks.acquire("t1", "db", "fast", TTL, NOW + TTL - 1), Held)
    assert raw(core, "lock#t1#db") is not None
    new = acquired(locks, owner="fast", now=NOW + TTL)
    assert new.token > old.token
    # The slow holder wakes up: it can neither extend nor release the new holder's lock.
    assert not locks.extend(old, NOW + 60_000)
    assert not locks.release(old, NOW + TTL + 1)
    assert isinstance(locks.acquire("t1", "db", "third", TTL, NOW + TTL + 2), Held)


def test_fencing_tokens_strictly_increase_even_after_ttl_deletes_the_item(
    core: Enqueuer, locks: LockStore
) -> None:
    tokens = []
    for i in range(5):
        got = acquired(locks, now=NOW + i)
        tokens.append(got.token)
        if i % 2:
            assert locks.release(got, NOW + i)  # released, or left to expire: both free
        else:
            assert locks.extend(got, NOW + i)  # shorten: expired at the next step
    # TTL removes an abandoned lock item (emulated: delete it as DynamoDB would).
    core.store.client.delete_item(TableName=core.store.table, Key={"pk": {"S": "lock#t1#db"}})
    tokens.append(acquired(locks, now=NOW + 10).token)
    assert tokens == sorted(set(tokens)), tokens


def test_release_and_extend_by_a_non_holder_are_refused(locks: LockStore) -> None:
    held = acquired(locks)
    forged = Acquired("t1", "db", held.token + 1, NOW + TTL)
    assert not locks.release(forged, NOW + 1)
    assert not locks.extend(forged, NOW + 100_000)
    assert isinstance(locks.acquire("t1", "db", "b", TTL, NOW + 2), Held)
    # The holder extends: the hold now outlasts its first end.
    assert locks.extend(held, NOW + 3 * TTL)
    assert locks.acquire("t1", "db", "b", TTL, NOW + TTL) == Held("a", NOW + 3 * TTL)
    # After a release even the (former) holder's late extend cannot revive it.
    assert locks.release(held, NOW + 4)
    assert not locks.extend(held, NOW + 100_000)
    assert isinstance(locks.acquire("t1", "db", "b", TTL, NOW + 5), Acquired)


def test_tenants_have_separate_lock_namespaces(core: Enqueuer, locks: LockStore) -> None:
    mine = acquired(locks, tenant="t1")
    theirs = acquired(locks, tenant="t2")  # same name, another tenant: not contended
    # Whatever token t2 presents, it addresses t2's own lock only: t1's stays held.
    locks.release(Acquired("t2", "db", mine.token, mine.until_ms), NOW + 1)
    locks.release(theirs, NOW + 1)
    assert isinstance(locks.acquire("t1", "db", "x", TTL, NOW + 2), Held)
    assert isinstance(locks.acquire("t2", "db", "x", TTL, NOW + 2), Acquired)
    # A tenant cannot smuggle another tenant's key prefix into its own.
    with pytest.raises(ValueError, match="invalid tenant"):
        locks.acquire("t2#t1", "db", "x", TTL, NOW)
    item = raw(core, "lock#t1#db")
    assert item is not None
    # The table's TTL attribute (template: expires_at, epoch seconds) is set past the
    # hold, and the item carries no task or index attributes.
    assert item["expires_at"] >= (NOW + TTL) // 1000
    assert not {"listed", "created_at", "name", "status"} & set(item)
    assert core.store.get("lock#t1#db") is None
    assert core.store.list_tasks("t1")[0] == []


# ---------------------------------------------------------- store.unclaim
def test_unclaim_restores_a_retrying_task_exactly(core: Enqueuer) -> None:
    task = core.build(TaskRequest(name="echo", lock_key="k"), "default")
    core.store.create(task, NOW)
    first = core.store.claim(task.id, "default", NOW, 30_000)
    assert isinstance(first, Claimed)
    assert core.store.schedule_retry(
        task.id, "default", first.token, 1, "error", "boom", NOW + 5_000, NOW
    )
    second = core.store.claim(task.id, "default", NOW + 5_000, 30_000)
    assert isinstance(second, Claimed) and second.task.attempts == 2
    assert core.store.unclaim(second)
    back = core.store.get(task.id)
    assert back is not None
    assert back.status is TaskStatus.RETRYING
    assert back.attempts == 1
    assert [(e.attempt, e.kind) for e in back.errors] == [(1, "error")]
    assert back.started_at is not None and int(back.started_at.timestamp() * 1000) == NOW
    assert not core.store.unclaim(second)  # fenced: the lease is gone
    again = core.store.claim(task.id, "default", NOW + 6_000, 30_000)
    assert isinstance(again, Claimed) and again.task.attempts == 2


# -------------------------------------------------------------- worker path
def receive_one(core: Enqueuer, timeout: float = 10) -> Delivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = core.transport.receive("default", 1, 1, 30)
        if got:
            return got[0]
    raise AssertionError("no message arrived")


def test_task_whose_lock_is_held_is_redelayed_unchanged_then_runs(
    core: Enqueuer, worker: Worker, locks: LockStore, tmp_path: Path
) -> None:
    log = tmp_path / "runs.log"
    tid = core.enqueue(
        TaskRequest(name="record", payload={"path": str(log)}, lock_key="report")
    ).task.id
    holder = locks.acquire("default", "report", "someone else", 2_000, now_ms())
    assert isinstance(holder, Acquired)

    delivery = receive_one(core)
    disposition = worker.process(delivery)
    assert disposition.status == "locked"
    assert disposition.action is Action.ACK  # a fresh delayed message replaces it
    apply(core, delivery, disposition)
    task = core.store.get(tid)
    assert task is not None
    assert (task.status, task.attempts, task.errors, task.started_at) == (
        TaskStatus.QUEUED,
        0,
        [],
        None,
    )
    assert not log.exists()  # the handler did not run
    counts = queue_counts(core)
    assert counts["delayed"] + counts["visible"] == 1 and counts["in_flight"] == 0

    assert locks.release(holder, now_ms())
    [done] = pump_until_final(core, worker, [tid], timeout=30)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.attempts == 1 and done.errors == []
    assert log.read_text().count("start") == 1
    # Released after the outcome was recorded: free for the next taker.
    assert isinstance(locks.acquire("default", "report", "next", 1_000, now_ms()), Acquired)


def test_the_handler_sees_its_locks_fencing_token(core: Enqueuer, worker: Worker) -> None:
    ids = [
        core.enqueue(TaskRequest(name="lock_token", lock_key="fenced")).task.id,
        core.enqueue(TaskRequest(name="lock_token", lock_key="fenced")).task.id,
        core.enqueue(TaskRequest(name="lock_token")).task.id,
    ]
    done = {t.id: t for t in pump_until_final(core, worker, ids, timeout=30)}
    first, second, unlocked = (done[i].result for i in ids)
    assert isinstance(first, int) and isinstance(second, int)
    assert abs(first - second) == 1  # one token per acquisition of the same lock
    assert unlocked is None


def test_tasks_with_one_lock_key_never_overlap_across_workers(
    core: Enqueuer, locks: LockStore, tmp_path: Path
) -> None:
    """Two workers racing over the same deliveries: one runs, the other re-delays."""
    log = tmp_path / "runs.log"
    req = TaskRequest(name="record", payload={"path": str(log), "sleep": 0.3}, lock_key="one")
    ids = [r.task.id for r in core.enqueue_many([req, req])]
    first = receive_one(core)
    second = receive_one(core)
    # Short leases (as pollers hold them, renewed by heartbeat): the waiter's delay
    # derives from the holder's remaining hold, so it comes back within seconds.
    keeper = LeaseKeeper(core.store, core.transport, lease_seconds=2, locks=locks)
    w1 = Worker(core.store, core.transport, InlineRunner(), keeper=keeper, locks=locks)
    w2 = Worker(core.store, core.transport, InlineRunner(), keeper=keeper, locks=locks)
    results: dict[str, Any] = {}
    t = threading.Thread(target=lambda: results.update(a=w1.process(first)))
    t.start()
    # Wait until the first task holds its lock (its start line is written), then race.
    deadline = time.monotonic() + 10
    while not (log.exists() and "start" in log.read_text()):
        assert time.monotonic() < deadline, "first task never started"
        time.sleep(0.02)
    results["b"] = w2.process(second)
    t.join(10)
    assert results["a"].status == "succeeded"
    assert results["b"].status == "locked"
    apply(core, first, results["a"])
    apply(core, second, results["b"])
    pump_until_final(core, w2, ids, timeout=30)
    kinds = [ln.split()[0] for ln in log.read_text().splitlines()]
    assert kinds == ["start", "end", "start", "end"]
    assert [getattr(core.store.get(i), "attempts", None) for i in ids] == [1, 1]


def running_with_lock(
    core: Enqueuer, locks: LockStore, key: str, lease_ms: int
) -> tuple[str, Delivery, Claimed, Acquired]:
    """A task with `lock_key=key` as a worker holds it: delivered, claimed, lock taken
    for 2 s."""
    tid = core.enqueue(TaskRequest(name="echo", lock_key=key)).task.id
    delivery = receive_one(core)
    claim = core.store.claim(tid, "default", now_ms(), lease_ms)
    assert isinstance(claim, Claimed)
    held = locks.acquire("default", key, "me", 2_000, now_ms())
    assert isinstance(held, Acquired)
    return tid, delivery, claim, held


def test_the_heartbeat_renews_the_task_lock_and_stops_a_task_that_lost_it(
    core: Enqueuer, locks: LockStore
) -> None:
    tid, delivery, claim, held = running_with_lock(core, locks, "beat", lease_ms=2_000)
    keeper = LeaseKeeper(core.store, core.transport, lease_seconds=60, locks=locks)
    lost = keeper.track(delivery, tid, claim.token, held)
    keeper.beat()
    assert not lost.is_set()
    # Renewed to the lease's new end (a minute), far past the first 2 s hold.
    refused = locks.acquire("default", "beat", "other", 1_000, now_ms() + 5_000)
    assert isinstance(refused, Held) and refused.until_ms > now_ms() + 50_000
    # Someone takes the lock after a (simulated) end of the hold: the next beat stops us.
    stolen = locks.acquire("default", "beat", "other", 1_000, refused.until_ms)
    assert isinstance(stolen, Acquired)
    keeper.beat()
    assert lost.is_set()
    assert keeper.untrack(claim.token) is Stop.LOCK_LOST  # stopped for the lock, not the lease


def test_the_heartbeat_stops_a_task_whose_lock_cannot_be_renewed_before_the_hold_ends(
    core: Enqueuer, locks: LockStore
) -> None:
    tid, delivery, claim, held = running_with_lock(core, locks, "flaky", lease_ms=60_000)
    # Every lock renewal fails (a table that is not there: a real error from DynamoDB).
    broken = LockStore(core.store.client, "no-such-table")
    keeper = LeaseKeeper(core.store, core.transport, lease_seconds=60, locks=broken)
    lost = keeper.track(delivery, tid, claim.token, held)
    keeper.beat()
    # The hold ends within the next beat interval (20 s): stop now, before it can lapse.
    assert lost.is_set()
    assert keeper.untrack(claim.token) is Stop.LOCK_LOST


# ---------------------------------------------------------- stratoq.lock()
def test_handler_lock_gives_a_token_and_releases(
    core: Enqueuer, worker: Worker, locks: LockStore, tmp_path: Path
) -> None:
    log = tmp_path / "guarded.log"
    payload = {"path": str(log), "lock": "ledger"}
    ids = [core.enqueue(TaskRequest(name="guarded", payload=payload)).task.id for _ in range(2)]
    done = pump_until_final(core, worker, ids)
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in done)
    tokens = sorted(t.result["token"] for t in done)
    assert tokens[0] < tokens[1]
    # Released on exit, and it was the default tenant's lock the handler took.
    free = locks.acquire("default", "ledger", "after", 1_000, now_ms())
    assert isinstance(free, Acquired) and free.token > tokens[1]
    assert isinstance(locks.acquire("other", "ledger", "x", 1_000, now_ms()), Acquired)


def test_handler_lock_unavailable_retries_the_task_later(
    core: Enqueuer, worker: Worker, locks: LockStore, tmp_path: Path
) -> None:
    log = tmp_path / "guarded.log"
    holder = locks.acquire("default", "ledger", "someone", 3_000, now_ms())
    assert isinstance(holder, Acquired)
    started = time.monotonic()
    tid = core.enqueue(
        TaskRequest(name="guarded", payload={"path": str(log), "lock": "ledger", "wait": 0.3})
    ).task.id
    delivery = receive_one(core)
    disposition = worker.process(delivery)
    apply(core, delivery, disposition)
    assert disposition.status == "retrying"
    task = core.store.get(tid)
    assert task is not None and task.status is TaskStatus.RETRYING
    # A Retry: the attempt counts, with the reason, and waits for the holder's hold.
    assert [(e.attempt, e.kind) for e in task.errors] == [(1, "retry")]
    assert "lock 'ledger' is held" in task.errors[0].message
    assert task.next_attempt_at is not None and task.errors[0].at is not None
    assert 1 <= (task.next_attempt_at - task.errors[0].at).total_seconds() <= 5
    assert time.monotonic() - started >= 0.3  # it did wait before giving up
    assert not log.exists()
    assert locks.release(holder, now_ms())
    [done] = pump_until_final(core, worker, [tid], timeout=30)
    assert done.status is TaskStatus.SUCCEEDED and done.attempts == 2


# ------------------------------------------------------------------ Lambda path
def test_lambda_worker_redelays_a_locked_task_then_runs_it(
    settings: Settings, core: Enqueuer, locks: LockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    # A cold start with this test's settings, read from the environment as on Lambda.
    services = Services.from_env()
    handler = entry(WorkerFunction, lambda: services)
    # A warm instance: its clients exist before the 2 s hold below starts to run out.
    services.store.get("warm-up")
    esm = EventSourceMapping(core.transport.client, core.transport, "default", handler)
    tid = core.enqueue(TaskRequest(name="echo", payload=1, lock_key="lam")).task.id
    holder = locks.acquire("default", "lam", "someone", 2_000, now_ms())
    assert isinstance(holder, Acquired)
    assert esm.poll_once() == 1
    task = core.store.get(tid)
    assert task is not None and (task.status, task.attempts) == (TaskStatus.QUEUED, 0)
    # Acknowledged and replaced by a delayed message: nothing left in flight.
    assert queue_counts(core)["in_flight"] == 0
    assert locks.release(holder, now_ms())
    deadline = time.monotonic() + 20
    while (task := core.store.get(tid)) is not None and not task.status.final:
        assert time.monotonic() < deadline, task
        esm.poll_once()
    assert task is not None and task.status is TaskStatus.SUCCEEDED and task.attempts == 1
