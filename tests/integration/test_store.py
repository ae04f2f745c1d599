"""TaskStore against the emulator: creation, idempotency, leases and fencing, user actions.

Time is explicit: every call gets its `now_ms`, so leases expire and retries fall due by
passing a later value, never by waiting.
"""

from __future__ import annotations

from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from stratoq.adapters import aws
from stratoq.adapters.store import MAX_ERROR_CHARS, Claimed, NotClaimed, TaskStore, from_ms, to_ms
from stratoq.core.errors import InvalidStateError, TaskNotFoundError
from stratoq.core.models import AttemptError, Backoff, Priority, Task, TaskRequest, TaskStatus
from stratoq.services.enqueue import Enqueuer

NOW = 1_800_000_000_000  # 2027-01-15: fixed, and in the future so no TTL can remove items
LEASE = 30_000
DAY_MS = 24 * 3600 * 1000
OTHER = "other-tenant"

_de = TypeDeserializer()


def build(core: Enqueuer, tenant: str = "default", **request: Any) -> Task:
    request.setdefault("name", "echo")
    return core.build(TaskRequest(**request), tenant)


def stored(core: Enqueuer, tenant: str = "default", **request: Any) -> Task:
    task, created = core.store.create(build(core, tenant, **request), NOW)
    assert created
    return task


def fetch(core: Enqueuer, task_id: str) -> Task:
    task = core.store.get(task_id)
    assert task is not None, task_id
    return task


def raw(core: Enqueuer, key: str) -> dict[str, Any] | None:
    """The item as DynamoDB holds it (lease fields included)."""
    out = aws.dynamodb(core.settings).get_item(
        TableName=core.store.table, Key={"pk": {"S": key}}, ConsistentRead=True
    )
    return {k: _de.deserialize(v) for k, v in out["Item"].items()} if "Item" in out else None


def claimed(core: Enqueuer, task_id: str, now_ms: int = NOW, lease_ms: int = LEASE) -> Claimed:
    result = core.store.claim(task_id, "default", now_ms, lease_ms)
    assert isinstance(result, Claimed), result
    return result


def item_count(core: Enqueuer) -> int:
    return aws.dynamodb(core.settings).scan(TableName=core.store.table, Select="COUNT")["Count"]


# ---------------------------------------------------------------- create and get
def test_create_and_get_round_trip(core: Enqueuer) -> None:
    payload = {"text": "héllo ✓", "n": 42, "f": 1.5, "items": [1, "two", None, True], "e": {}}
    task = build(core, payload=payload)
    result, created = core.store.create(task, NOW)
    assert created
    assert result is task

    got = fetch(core, task.id)
    assert got.id == task.id
    assert got.payload == payload
    assert got.name == "echo"
    assert got.tenant == "default"
    assert got.status is TaskStatus.QUEUED
    assert got.queue == "default"
    assert got.priority is Priority.DEFAULT
    assert got.attempts == 0
    assert got.max_attempts == core.settings.default_max_attempts
    assert got.timeout_seconds == core.settings.default_timeout_seconds
    assert got.backoff == Backoff()
    assert got.result is None
    assert got.error is None
    assert got.errors == []
    assert got.idempotency_key is None
    assert got.started_at is None
    assert got.finished_at is None
    assert got.next_attempt_at is None
    assert got.scheduled_for is None
    # Stored with millisecond precision.
    assert to_ms(got.created_at) == to_ms(task.created_at)


def test_create_keeps_every_option(core: Enqueuer) -> None:
    task = stored(
        core,
        tenant=OTHER,
        name="ns:job-1",
        payload=[1, 2],
        priority="high",
        delay_seconds=120,
        timeout_seconds=9,
        max_attempts=2,
        backoff={"base_seconds": 0.5, "max_seconds": 10, "jitter": False},
        idempotency_key="idem-1",
        lock_key="lock-1",
    )
    got = core.store.get(task.id, OTHER)
    assert got is not None
    assert got.tenant == OTHER
    assert got.name == "ns:job-1"
    assert got.payload == [1, 2]
    assert got.priority is Priority.HIGH
    assert got.status is TaskStatus.SCHEDULED
    assert got.timeout_seconds == 9
    assert got.max_attempts == 2
    assert got.backoff == Backoff(base_seconds=0.5, max_seconds=10, jitter=False)
    assert got.idempotency_key == "idem-1"
    assert got.lock_key == "lock-1"
    assert to_ms(got.next_attempt_at) == to_ms(task.next_attempt_at)
    assert to_ms(got.scheduled_for) == to_ms(task.scheduled_for)
    assert got.next_attempt_at is not None


def test_get_with_another_tenant_returns_none(core: Enqueuer) -> None:
    task = stored(core)
    assert core.store.get(task.id, OTHER) is None
    assert core.store.get(task.id, "default") is not None
    assert core.store.get(task.id) is not None


def test_get_of_an_unknown_id_returns_none(core: Enqueuer) -> None:
    assert core.store.get("0" * 32) is None


def test_create_refuses_to_overwrite_a_task_with_the_same_id(core: Enqueuer) -> None:
    task = stored(core, payload="first")
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        core.store.create(task.model_copy(update={"payload": "second"}), NOW)
    assert fetch(core, task.id).payload == "first"


# ----------------------------------------------------------------- idempotency
def test_same_idempotency_key_returns_the_existing_task(core: Enqueuer) -> None:
    first, created = core.store.create(build(core, payload=1, idempotency_key="k"), NOW)
    assert created
    items = item_count(core)

    second = build(core, payload=2, idempotency_key="k")
    existing, created = core.store.create(second, NOW + 1000)
    assert created is False
    assert existing.id == first.id
    assert existing.payload == 1
    # Nothing new was stored.
    assert core.store.get(second.id) is None
    assert item_count(core) == items
    assert [t.id for t in core.store.list_tasks("default")[0]] == [first.id]


def test_idempotency_keys_are_per_tenant(core: Enqueuer) -> None:
    mine, _ = core.store.create(build(core, idempotency_key="k"), NOW)
    theirs, created = core.store.create(build(core, OTHER, idempotency_key="k"), NOW)
    assert created
    assert theirs.id != mine.id
    got = core.store.get(theirs.id, OTHER)
    assert got is not None
    assert got.tenant == OTHER
    assert fetch(core, mine.id).tenant == "default"


def test_idempotency_key_is_free_again_after_its_window(core: Enqueuer) -> None:
    store = TaskStore(aws.dynamodb(core.settings), core.store.table, idempotency_window_ms=1)
    first, created = store.create(build(core, idempotency_key="k"), 1_000)
    assert created  # window ends at 1_001

    same_window, created = store.create(build(core, idempotency_key="k"), 1_001)
    assert created is False
    assert same_window.id == first.id

    later = build(core, idempotency_key="k")
    new, created = store.create(later, 1_002)
    assert created
    assert new.id == later.id != first.id
    assert store.get(later.id) is not None
    assert store.get(first.id) is not None  # the old task itself stays
    # The key now points at the new task.
    again, created = store.create(build(core, idempotency_key="k"), 1_002)
    assert created is False
    assert again.id == later.id


# ----------------------------------------------------------------------- claims
def test_claim_takes_the_lease(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert claim.took_over is False
    assert claim.lease_expires_ms == NOW + LEASE
    assert claim.task.status is TaskStatus.RUNNING
    assert claim.task.attempts == 1
    assert to_ms(claim.task.started_at) == NOW

    got = fetch(core, task.id)
    assert got.status is TaskStatus.RUNNING
    assert got.attempts == 1
    assert to_ms(got.started_at) == NOW
    item = raw(core, task.id)
    assert item is not None
    assert item["lease_token"] == claim.token
    # The lease is stored one second long, so that a claim allowed a second early (SQS
    # delays are whole seconds) can never cut into it.
    assert item["claim_after"] == NOW + LEASE + 1001


def test_second_claim_while_the_lease_is_live_is_busy(core: Enqueuer) -> None:
    task = stored(core)
    first = claimed(core, task.id)
    # Up to and including the moment the lease ends, it is still held.
    for now in (NOW, NOW + 1_000, NOW + LEASE):
        refused = core.store.claim(task.id, "default", now, LEASE)
        assert isinstance(refused, NotClaimed)
        assert refused.reason == "busy"
        assert refused.lease_expires_ms == NOW + LEASE
        assert refused.task is not None
        assert refused.task.id == task.id
    item = raw(core, task.id)
    assert item is not None
    assert item["lease_token"] == first.token
    assert item["attempts"] == 1


def test_claim_of_a_task_not_yet_due_is_refused(core: Enqueuer) -> None:
    task = stored(core, delay_seconds=3600)
    due = to_ms(task.next_attempt_at)
    assert due is not None
    refused = core.store.claim(task.id, "default", due - 1_001, LEASE)
    assert isinstance(refused, NotClaimed)
    assert refused.reason == "not_due"
    assert refused.task is not None
    assert to_ms(refused.task.next_attempt_at) == due
    got = fetch(core, task.id)
    assert got.status is TaskStatus.SCHEDULED
    assert got.attempts == 0
    # Up to a second early is accepted (SQS delays have whole-second resolution).
    claim = claimed(core, task.id, now_ms=due - 1_000)
    assert claim.task.attempts == 1


def test_claim_after_the_lease_expired_takes_over(core: Enqueuer) -> None:
    task = stored(core)
    first = claimed(core, task.id, now_ms=NOW, lease_ms=1)
    second = claimed(core, task.id, now_ms=NOW + 2)
    assert second.took_over is True
    assert second.token != first.token
    assert second.task.attempts == 2
    assert second.lease_expires_ms == NOW + 2 + LEASE
    got = fetch(core, task.id)
    assert got.attempts == 2
    assert got.status is TaskStatus.RUNNING
    assert to_ms(got.started_at) == NOW + 2


def test_claim_of_a_missing_task(core: Enqueuer) -> None:
    refused = core.store.claim("f" * 32, "default", NOW, LEASE)
    assert refused == NotClaimed("missing", None)
    assert raw(core, "f" * 32) is None  # the failed conditional update created nothing


def test_claim_of_a_finished_task_is_final(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert core.store.complete(task.id, "default", claim.token, "ok", NOW + 1)
    refused = core.store.claim(task.id, "default", NOW + 10 * LEASE, LEASE)
    assert isinstance(refused, NotClaimed)
    assert refused.reason == "final"
    assert fetch(core, task.id).attempts == 1


def test_claim_with_a_wrong_tenant_is_refused(core: Enqueuer) -> None:
    task = stored(core)
    refused = core.store.claim(task.id, OTHER, NOW, LEASE)
    assert isinstance(refused, NotClaimed)
    got = fetch(core, task.id)
    assert got.status is TaskStatus.QUEUED
    assert got.attempts == 0
    item = raw(core, task.id)
    assert item is not None
    assert "lease_token" not in item
    # The owner can still claim it.
    assert claimed(core, task.id).task.attempts == 1


def test_claim_with_a_wrong_tenant_says_tenant(core: Enqueuer) -> None:
    task = stored(core)
    refused = core.store.claim(task.id, OTHER, NOW, LEASE)
    assert isinstance(refused, NotClaimed)
    assert refused.reason == "tenant"


# --------------------------------------------------------------------- fencing
def test_stale_lease_holder_cannot_write(core: Enqueuer) -> None:
    task = stored(core)
    stale = claimed(core, task.id, now_ms=NOW, lease_ms=1)
    current = claimed(core, task.id, now_ms=NOW + 2)
    before = raw(core, task.id)

    later = NOW + 5
    assert core.store.complete(task.id, "default", stale.token, "stale", later) is False
    assert (
        core.store.schedule_retry(
            task.id, "default", stale.token, 1, "error", "stale", later + 1000, later
        )
        is False
    )
    assert core.store.fail(task.id, "default", stale.token, 1, "error", "stale", later) is False
    assert core.store.extend_lease(task.id, stale.token, later + 10 * LEASE) is False
    assert core.store.release(task.id, "default", stale.token) is False
    assert core.store.record_lost_attempt(task.id, stale.token, 1, "x", later) is False
    assert raw(core, task.id) == before
    got = fetch(core, task.id)
    assert got.status is TaskStatus.RUNNING
    assert got.result is None
    assert got.errors == []

    # The current holder's writes are accepted.
    assert core.store.extend_lease(task.id, current.token, later + 10 * LEASE) is True
    item = raw(core, task.id)
    assert item is not None
    assert item["claim_after"] == later + 10 * LEASE + 1001
    assert core.store.complete(task.id, "default", current.token, "fresh", later) is True
    assert fetch(core, task.id).result == "fresh"


def test_writes_with_a_made_up_token_are_refused(core: Enqueuer) -> None:
    task = stored(core)
    claimed(core, task.id)
    assert core.store.complete(task.id, "default", "not-the-token", 1, NOW) is False
    assert fetch(core, task.id).status is TaskStatus.RUNNING


def test_writes_after_completion_are_refused(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert core.store.complete(task.id, "default", claim.token, "once", NOW + 1)
    # The lease is gone with the completion: a second outcome cannot overwrite it.
    assert core.store.complete(task.id, "default", claim.token, "twice", NOW + 2) is False
    assert core.store.fail(task.id, "default", claim.token, 1, "error", "x", NOW + 2) is False
    got = fetch(core, task.id)
    assert got.status is TaskStatus.SUCCEEDED
    assert got.result == "once"


# ------------------------------------------------------------------- outcomes
def test_complete_records_the_result(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    result = {"rows": [1, 2, 3], "ok": True}
    assert core.store.complete(task.id, "default", claim.token, result, NOW + 500)
    got = fetch(core, task.id)
    assert got.status is TaskStatus.SUCCEEDED
    assert got.result == result
    assert to_ms(got.finished_at) == NOW + 500
    assert got.attempts == 1
    item = raw(core, task.id)
    assert item is not None
    # Final: nothing can claim it again, and its holder's token is spent.
    assert "claim_after" not in item
    assert "lease_token" not in item
    assert core.store.extend_lease(task.id, claim.token, NOW + 10 * LEASE) is False
    assert "claim_after" not in raw(core, task.id)
    assert item["expires_at"] == (NOW + 500 + 30 * DAY_MS) // 1000
    assert [t.id for t in core.store.list_tasks("default", TaskStatus.SUCCEEDED)[0]] == [task.id]
    assert core.store.list_tasks("default", TaskStatus.RUNNING)[0] == []


def test_schedule_retry_records_the_error_and_the_next_attempt(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    next_at = NOW + 60_000
    assert core.store.schedule_retry(
        task.id, "default", claim.token, 1, "error", "boom", next_at, NOW + 100
    )
    got = fetch(core, task.id)
    assert got.status is TaskStatus.RETRYING
    assert to_ms(got.next_attempt_at) == next_at
    assert got.error == "boom"
    assert got.errors == [
        AttemptError(attempt=1, kind="error", message="boom", at=from_ms(NOW + 100))
    ]
    assert got.attempts == 1
    assert got.finished_at is None
    item = raw(core, task.id)
    assert item is not None
    assert "lease_token" not in item
    assert [t.id for t in core.store.list_tasks("default", TaskStatus.RETRYING)[0]] == [task.id]

    # Not claimable before it is due, claimable after; a second retry appends.
    early = core.store.claim(task.id, "default", next_at - 5_000, LEASE)
    assert isinstance(early, NotClaimed)
    assert early.reason == "not_due"
    second = claimed(core, task.id, now_ms=next_at)
    assert second.took_over is False
    assert second.task.attempts == 2
    assert core.store.schedule_retry(
        task.id, "default", second.token, 2, "timeout", "slow", next_at + 60_000, next_at + 1
    )
    got = fetch(core, task.id)
    assert [(e.attempt, e.kind, e.message) for e in got.errors] == [
        (1, "error", "boom"),
        (2, "timeout", "slow"),
    ]
    assert got.error == "slow"
    assert to_ms(got.next_attempt_at) == next_at + 60_000


def test_fail_keeps_every_error(core: Enqueuer) -> None:
    task = stored(core, max_attempts=3)
    now = NOW
    for attempt in (1, 2):
        claim = claimed(core, task.id, now_ms=now)
        assert claim.task.attempts == attempt
        assert core.store.schedule_retry(
            task.id, "default", claim.token, attempt, "error", f"e{attempt}", now + 10, now + 1
        )
        now += 10
    claim = claimed(core, task.id, now_ms=now)
    assert claim.task.attempts == 3
    assert core.store.fail(task.id, "default", claim.token, 3, "fail", "given up", now + 1)

    got = fetch(core, task.id)
    assert got.status is TaskStatus.FAILED
    assert got.attempts == 3
    assert got.error == "given up"
    assert [(e.attempt, e.kind, e.message) for e in got.errors] == [
        (1, "error", "e1"),
        (2, "error", "e2"),
        (3, "fail", "given up"),
    ]
    assert to_ms(got.finished_at) == now + 1
    assert got.next_attempt_at is None
    item = raw(core, task.id)
    assert item is not None
    assert "lease_token" not in item
    assert [t.id for t in core.store.list_tasks("default", TaskStatus.FAILED)[0]] == [task.id]


def test_long_error_messages_are_truncated(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    message = "x" * (MAX_ERROR_CHARS + 500)
    assert core.store.fail(task.id, "default", claim.token, 1, "error", message, NOW + 1)
    got = fetch(core, task.id)
    assert got.error == "x" * MAX_ERROR_CHARS
    assert got.errors[0].message == "x" * MAX_ERROR_CHARS


def test_release_gives_the_attempt_back(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert core.store.release(task.id, "default", claim.token)
    got = fetch(core, task.id)
    assert got.status is TaskStatus.QUEUED
    assert got.attempts == 0
    assert claimed(core, task.id, now_ms=NOW + 1).took_over is False


# ----------------------------------------------------------------- user actions
@pytest.mark.parametrize("delay", [None, 3600])
def test_cancel_of_a_task_that_has_not_started(core: Enqueuer, delay: int | None) -> None:
    task = stored(core, delay_seconds=delay)
    cancelled = core.store.cancel(task.id, "default", NOW)
    assert cancelled.id == task.id
    assert cancelled.status is TaskStatus.CANCELLED
    assert to_ms(cancelled.finished_at) == NOW
    assert cancelled.next_attempt_at is None
    got = fetch(core, task.id)
    assert got.status is TaskStatus.CANCELLED
    assert [t.id for t in core.store.list_tasks("default", TaskStatus.CANCELLED)[0]] == [task.id]
    refused = core.store.claim(task.id, "default", NOW + 10 * DAY_MS, LEASE)
    assert isinstance(refused, NotClaimed)
    assert refused.reason == "final"


def test_cancel_of_a_running_task_is_refused(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    with pytest.raises(InvalidStateError, match="running"):
        core.store.cancel(task.id, "default", NOW + 1)
    got = fetch(core, task.id)
    assert got.status is TaskStatus.RUNNING
    assert got.finished_at is None
    assert core.store.complete(task.id, "default", claim.token, 1, NOW + 2)


@pytest.mark.parametrize("final", ["succeeded", "failed", "cancelled"])
def test_cancel_of_a_finished_task_is_refused(core: Enqueuer, final: str) -> None:
    task = stored(core)
    if final == "cancelled":
        core.store.cancel(task.id, "default", NOW)
    else:
        claim = claimed(core, task.id)
        if final == "succeeded":
            assert core.store.complete(task.id, "default", claim.token, 1, NOW + 1)
        else:
            assert core.store.fail(task.id, "default", claim.token, 1, "fail", "x", NOW + 1)
    before = raw(core, task.id)
    with pytest.raises(InvalidStateError, match=final):
        core.store.cancel(task.id, "default", NOW + 2)
    assert raw(core, task.id) == before


def test_cancel_of_an_unknown_task(core: Enqueuer) -> None:
    with pytest.raises(TaskNotFoundError):
        core.store.cancel("0" * 32, "default", NOW)
    assert raw(core, "0" * 32) is None


def test_cancel_of_another_tenants_task(core: Enqueuer) -> None:
    task = stored(core)
    with pytest.raises(TaskNotFoundError):
        core.store.cancel(task.id, OTHER, NOW)
    assert fetch(core, task.id).status is TaskStatus.QUEUED


def test_cancel_of_an_idempotency_record_is_not_found(core: Enqueuer) -> None:
    stored(core, idempotency_key="k")
    assert raw(core, "idem#default#k") is not None
    with pytest.raises(TaskNotFoundError):
        core.store.cancel("idem#default#k", "default", NOW)


def test_requeue_of_a_failed_task(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert core.store.fail(task.id, "default", claim.token, 1, "fail", "bad", NOW + 1)
    requeued = core.store.requeue(task.id, "default", NOW + 2)
    assert requeued.status is TaskStatus.QUEUED
    assert requeued.attempts == 0
    assert requeued.error is None
    assert requeued.finished_at is None
    got = fetch(core, task.id)
    assert got.status is TaskStatus.QUEUED
    assert got.attempts == 0
    item = raw(core, task.id)
    assert item is not None
    assert "expires_at" not in item  # no longer due for TTL removal
    assert [t.id for t in core.store.list_tasks("default", TaskStatus.QUEUED)[0]] == [task.id]
    assert core.store.list_tasks("default", TaskStatus.FAILED)[0] == []
    # Runnable again, with a fresh attempt count.
    assert claimed(core, task.id, now_ms=NOW + 3).task.attempts == 1


def test_requeue_of_a_cancelled_task(core: Enqueuer) -> None:
    task = stored(core)
    core.store.cancel(task.id, "default", NOW)
    assert core.store.requeue(task.id, "default", NOW + 1).status is TaskStatus.QUEUED


def test_requeue_of_a_queued_task_that_never_started_returns_it_to_be_sent_again(
    core: Enqueuer,
) -> None:
    queued = stored(core)
    again = core.store.requeue(queued.id, "default", NOW)
    assert (again.id, again.status, again.attempts) == (queued.id, TaskStatus.QUEUED, 0)
    with pytest.raises(TaskNotFoundError):
        core.store.requeue(queued.id, OTHER, NOW)


def test_requeue_of_live_or_succeeded_tasks_is_refused(core: Enqueuer) -> None:
    queued = stored(core)
    running = stored(core)
    claim = claimed(core, running.id)
    with pytest.raises(InvalidStateError, match="running"):
        core.store.requeue(running.id, "default", NOW)
    assert core.store.complete(running.id, "default", claim.token, 1, NOW + 1)
    with pytest.raises(InvalidStateError, match="succeeded"):
        core.store.requeue(running.id, "default", NOW + 2)
    with pytest.raises(TaskNotFoundError):
        core.store.requeue(queued.id, OTHER, NOW)


# ---------------------------------------------------------------------- listing
def stored_at(core: Enqueuer, created_ms: int, tenant: str = "default", **request: Any) -> Task:
    """A task created at an explicit millisecond (distinct sort keys: a defined order)."""
    task = build(core, tenant, **request).model_copy(update={"created_at": from_ms(created_ms)})
    assert core.store.create(task, created_ms)[1]
    return task


def test_list_tasks_by_status_and_newest_first(core: Enqueuer) -> None:
    base = NOW - 10_000
    ids = [stored_at(core, base + i).id for i in range(4)]
    stored_at(core, base + 10, tenant=OTHER)
    claim = claimed(core, ids[1])
    assert core.store.complete(ids[1], "default", claim.token, None, NOW)
    claimed(core, ids[2])

    def listed(status: TaskStatus | None) -> list[str]:
        tasks, token = core.store.list_tasks("default", status)
        assert token is None
        return [t.id for t in tasks]

    assert listed(TaskStatus.QUEUED) == [ids[3], ids[0]]
    assert listed(TaskStatus.SUCCEEDED) == [ids[1]]
    assert listed(TaskStatus.RUNNING) == [ids[2]]
    assert listed(TaskStatus.FAILED) == []
    assert listed(None) == [ids[3], ids[2], ids[1], ids[0]]
    # Full tasks, not just keys, without a status too.
    everything = core.store.list_tasks("default")[0]
    assert {t.id: t.status for t in everything}[ids[1]] is TaskStatus.SUCCEEDED
    assert all(t.name == "echo" for t in everything)


def test_list_tasks_of_another_tenant(core: Enqueuer) -> None:
    mine = stored_at(core, NOW)
    theirs = stored_at(core, NOW + 1, tenant=OTHER)
    assert [t.id for t in core.store.list_tasks(OTHER)[0]] == [theirs.id]
    assert [t.id for t in core.store.list_tasks(OTHER, TaskStatus.QUEUED)[0]] == [theirs.id]
    assert [t.id for t in core.store.list_tasks("default")[0]] == [mine.id]
    assert core.store.list_tasks("nobody")[0] == []


def test_list_tasks_by_status_and_name(core: Enqueuer) -> None:
    a = stored_at(core, NOW, name="alpha")
    stored_at(core, NOW + 1, name="beta")
    c = stored_at(core, NOW + 2, name="alpha")
    queued_alpha = core.store.list_tasks("default", TaskStatus.QUEUED, name="alpha")[0]
    assert [t.id for t in queued_alpha] == [c.id, a.id]


def test_list_tasks_by_name_without_status(core: Enqueuer) -> None:
    a = stored_at(core, NOW, name="alpha")
    stored_at(core, NOW + 1, name="beta")
    c = stored_at(core, NOW + 2, name="alpha")
    assert [t.id for t in core.store.list_tasks("default", name="alpha")[0]] == [c.id, a.id]


def all_pages(
    core: Enqueuer, status: TaskStatus | None = None, limit: int = 50, most: int = 100
) -> list[list[str]]:
    """Every page of the default tenant's listing, by ids, following next_token."""
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        tasks, token = core.store.list_tasks("default", status, limit=limit, next_token=token)
        pages.append([t.id for t in tasks])
        if token is None:
            return pages
        assert len(pages) < most, "pagination does not end"


@pytest.mark.parametrize("status", [None, TaskStatus.QUEUED])
def test_list_tasks_pages_with_next_token(core: Enqueuer, status: TaskStatus | None) -> None:
    ids = [stored_at(core, NOW + i).id for i in range(5)]
    stored_at(core, NOW + 100, tenant=OTHER)
    pages = all_pages(core, status, limit=2, most=10)
    seen = [i for page in pages for i in page]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert len(seen) == len(set(seen)) == 5
    assert seen == list(reversed(ids))


def test_list_tasks_rejects_a_forged_token(core: Enqueuer) -> None:
    with pytest.raises(ValueError, match="next_token"):
        core.store.list_tasks("default", next_token="!!not-base64!!")


def batch_at(core: Enqueuer, count: int, created_ms: int, **request: Any) -> list[Task]:
    """`count` tasks created in one batch at `created_ms` (listed through pages)."""
    tasks = [
        build(core, **request).model_copy(update={"created_at": from_ms(created_ms)})
        for _ in range(count)
    ]
    core.store.create_many(tasks)
    return tasks


def listing_entries(core: Enqueuer, tenant: str = "default") -> list[str]:
    out = core.store.client.query(
        TableName=core.store.table,
        IndexName="listing",
        KeyConditionExpression="listed = :t",
        ExpressionAttributeValues={":t": {"S": tenant}},
    )
    return [i["pk"]["S"] for i in out["Items"]]


def test_a_batch_is_listed_through_one_index_entry_per_page(core: Enqueuer) -> None:
    first = stored_at(core, NOW)
    batch = batch_at(core, 2 * 100 + 30, NOW + 1)
    last = stored_at(core, NOW + 2)
    entries = listing_entries(core)
    # Two single tasks and three pages (100 + 100 + 30 ids): five entries for 232 tasks.
    assert len(entries) == 5
    assert sorted(e for e in entries if not e.startswith("page#")) == sorted([first.id, last.id])
    raw = core.store.client.get_item(TableName=core.store.table, Key={"pk": {"S": batch[0].id}})
    assert "listed" not in raw["Item"] and raw["Item"]["tenant"]["S"] == "default"
    # The page of the last 30 ids is the newest entry of the batch (ids are time-ordered).
    pages = all_pages(core, limit=40)
    seen = [i for page in pages for i in page]
    assert len(seen) == len(set(seen)) == 232
    assert seen[0] == last.id and seen[-1] == first.id
    assert set(seen[1:-1]) == {t.id for t in batch}
    # Pages of exactly `limit` tasks, resuming inside listing pages.
    assert [len(p) for p in pages] == [40] * 5 + [32]


def test_batched_tasks_filter_by_status_and_name_across_pages(core: Enqueuer) -> None:
    alpha = batch_at(core, 5, NOW, name="alpha")
    beta = batch_at(core, 4, NOW + 1, name="beta")
    claim = claimed(core, alpha[2].id)
    assert core.store.complete(alpha[2].id, "default", claim.token, None, NOW)
    succeeded = [i for p in all_pages(core, TaskStatus.SUCCEEDED, limit=3) for i in p]
    assert succeeded == [alpha[2].id]
    queued = [i for p in all_pages(core, TaskStatus.QUEUED, limit=3) for i in p]
    assert queued == [t.id for t in reversed(beta)] + [
        t.id for t in reversed(alpha) if t.id != alpha[2].id
    ]
    named, _ = core.store.list_tasks("default", name="beta", limit=10)
    assert [t.id for t in named] == [t.id for t in reversed(beta)]


def test_a_listed_id_whose_task_is_gone_is_skipped(core: Enqueuer) -> None:
    batch = batch_at(core, 3, NOW)
    core.store.client.delete_item(TableName=core.store.table, Key={"pk": {"S": batch[1].id}})
    listed = [i for p in all_pages(core, limit=2) for i in p]
    assert listed == [batch[2].id, batch[0].id]
    # A page is no task.
    page = next(e for e in listing_entries(core) if e.startswith("page#"))
    assert core.store.get(page) is None


def test_a_token_inside_a_page_survives_newer_tasks(core: Enqueuer) -> None:
    batch = batch_at(core, 100, NOW)
    first, token = core.store.list_tasks("default", limit=50)
    assert token is not None
    # New work arrives between the two calls: a single task and another batch.
    stored_at(core, NOW + 1)
    batch_at(core, 30, NOW + 2)
    second, _ = core.store.list_tasks("default", limit=50, next_token=token)
    newest_first = [t.id for t in reversed(batch)]
    assert [t.id for t in first] == newest_first[:50]
    assert [t.id for t in second] == newest_first[50:]


def test_a_page_that_expired_between_calls_is_passed_over(core: Enqueuer) -> None:
    older = stored_at(core, NOW - 1)
    batch_at(core, 10, NOW)
    _, token = core.store.list_tasks("default", limit=4)
    page = next(e for e in listing_entries(core) if e.startswith("page#"))
    core.store.client.delete_item(TableName=core.store.table, Key={"pk": {"S": page}})
    rest, token = core.store.list_tasks("default", limit=4, next_token=token)
    assert [t.id for t in rest] == [older.id]
    assert token is None


def test_listing_reads_only_the_pages_it_needs(core: Enqueuer) -> None:
    for i in range(20):
        batch_at(core, 100, NOW + i)
    calls: list[int] = []
    client = core.store.client
    original = client.batch_get_item

    def counting(**kwargs: Any) -> Any:
        calls.append(len(kwargs["RequestItems"][core.store.table]["Keys"]))
        return original(**kwargs)

    client.batch_get_item = counting  # type: ignore[method-assign]
    try:
        tasks, token = core.store.list_tasks("default", limit=50)
    finally:
        client.batch_get_item = original  # type: ignore[method-assign]
    assert len(tasks) == 50 and token is not None
    # Two pages at most (the newest holds 100 ids), then the 50 tasks.
    assert calls == [2, 50]


def test_backfill_lists_tasks_stored_before_the_listing_index(core: Enqueuer) -> None:
    # Tasks stored by an older version: `tenant` but no `listed` and no page.
    old = [stored_at(core, NOW - 10 + i) for i in range(3)]
    for task in old:
        core.store.client.update_item(
            TableName=core.store.table, Key={"pk": {"S": task.id}}, UpdateExpression="REMOVE listed"
        )
    batch = batch_at(core, 4, NOW)
    lock_pk = "lock#default#x"
    core.store.client.put_item(TableName=core.store.table, Item={"pk": {"S": lock_pk}})
    assert {t.id for t in core.store.list_tasks("default")[0]} == {t.id for t in batch}

    assert core.store.backfill_listing() == 3
    listed = [t.id for t in core.store.list_tasks("default")[0]]
    assert listed == [t.id for t in reversed(batch)] + [t.id for t in reversed(old)]
    # Batched tasks stay listed once (by their page); running it again changes nothing.
    assert core.store.backfill_listing() == 0
    assert len(listing_entries(core)) == 3 + 1
