"""TaskStore against the emulator: claims, fencing and outcomes (`adapters.store.leases`).

Time is explicit: every call gets its `now_ms`, so leases expire and retries fall due by
passing a later value, never by waiting (helpers in tests/support/store.py).
"""

from __future__ import annotations

from stratoq.adapters.store import MAX_ERROR_CHARS, NotClaimed, Renewal
from stratoq.core.clock import from_ms, to_ms
from stratoq.core.models import AttemptError, TaskStatus
from stratoq.services.enqueue import Enqueuer
from tests.support.store import DAY_MS, LEASE, NOW, OTHER, claimed, fetch, raw, stored


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
    assert core.store.extend_lease(task.id, stale.token, later + 10 * LEASE) is Renewal.LOST
    assert core.store.release(task.id, "default", stale.token) is False
    assert core.store.record_lost_attempt(task.id, stale.token, 1, "x", later) is False
    assert raw(core, task.id) == before
    got = fetch(core, task.id)
    assert got.status is TaskStatus.RUNNING
    assert got.result is None
    assert got.errors == []

    # The current holder's writes are accepted.
    assert core.store.extend_lease(task.id, current.token, later + 10 * LEASE) is Renewal.RENEWED
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
    assert core.store.extend_lease(task.id, claim.token, NOW + 10 * LEASE) is Renewal.LOST
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
    assert got.error is None  # final: the last error is in `errors`, no retry is pending
    assert [(e.attempt, e.kind, e.message) for e in got.errors] == [
        (1, "error", "e1"),
        (2, "error", "e2"),
        (3, "fail", "given up"),
    ]
    assert to_ms(got.finished_at) == now + 1
    assert got.next_attempt_at is None
    item = raw(core, task.id)
    assert item is not None
    assert not {"lease_token", "error", "next_attempt_at"} & set(item)
    assert [t.id for t in core.store.list_tasks("default", TaskStatus.FAILED)[0]] == [task.id]


def test_success_after_retries_keeps_no_pending_retry(core: Enqueuer) -> None:
    task = stored(core)
    first = claimed(core, task.id)
    assert core.store.schedule_retry(
        task.id, "default", first.token, 1, "error", "boom", NOW + 10, NOW + 1
    )
    second = claimed(core, task.id, now_ms=NOW + 10)
    assert core.store.complete(task.id, "default", second.token, "ok", NOW + 20)
    got = fetch(core, task.id)
    assert (got.status, got.error, got.next_attempt_at) == (TaskStatus.SUCCEEDED, None, None)
    assert [(e.attempt, e.message) for e in got.errors] == [(1, "boom")]
    item = raw(core, task.id)
    assert item is not None
    assert not {"error", "next_attempt_at"} & set(item)


def test_long_error_messages_are_truncated(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    message = "x" * (MAX_ERROR_CHARS + 500)
    assert core.store.schedule_retry(
        task.id, "default", claim.token, 1, "error", message, NOW + 10, NOW + 1
    )
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
