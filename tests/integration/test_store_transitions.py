"""TaskStore against the emulator: cancel and requeue (`adapters.store.transitions`).

Time is explicit: every call gets its `now_ms`, so leases expire and retries fall due by
passing a later value, never by waiting (helpers in tests/support/store.py).
"""

from __future__ import annotations

import pytest

from stratoq.adapters.store import NotClaimed, Renewal
from stratoq.core.clock import to_ms
from stratoq.core.errors import InvalidStateError, TaskNotFoundError
from stratoq.core.models import TaskStatus
from stratoq.services.enqueue import Enqueuer
from tests.support.store import DAY_MS, LEASE, NOW, OTHER, claimed, fetch, raw, stored


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


def test_cancel_of_a_retrying_task_drops_the_pending_retry(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert core.store.schedule_retry(
        task.id, "default", claim.token, 1, "error", "boom", NOW + 60_000, NOW + 1
    )
    cancelled = core.store.cancel(task.id, "default", NOW + 2)
    assert (cancelled.status, cancelled.error, cancelled.next_attempt_at) == (
        TaskStatus.CANCELLED,
        None,
        None,
    )
    assert [e.message for e in cancelled.errors] == ["boom"]
    item = raw(core, task.id)
    assert item is not None
    assert not {"error", "next_attempt_at"} & set(item)


def test_cancel_of_a_running_task_requests_it_and_its_holder_records_it(core: Enqueuer) -> None:
    # It used to be refused (409): now the request is stored and the holder acts on it.
    task = stored(core)
    claim = claimed(core, task.id)
    requested = core.store.cancel(task.id, "default", NOW + 1)
    assert requested.status is TaskStatus.RUNNING
    assert to_ms(requested.cancel_requested_at) == NOW + 1
    # A second request keeps the first one's time.
    assert to_ms(core.store.cancel(task.id, "default", NOW + 2).cancel_requested_at) == NOW + 1
    # The heartbeat's renewal tells the holder, and extends nothing.
    before = raw(core, task.id)
    assert (
        core.store.extend_lease(task.id, claim.token, NOW + 10 * LEASE) is Renewal.CANCEL_REQUESTED
    )
    assert raw(core, task.id) == before
    assert core.store.cancel_requested(task.id, claim.token)
    assert not core.store.cancel_requested(task.id, "not-the-token")
    assert core.store.finish_cancelled(task.id, "default", claim.token, 1, "stopped", NOW + 3)
    got = fetch(core, task.id)
    assert (got.status, got.attempts, to_ms(got.finished_at)) == (TaskStatus.CANCELLED, 1, NOW + 3)
    assert [(e.attempt, e.kind, e.message) for e in got.errors] == [(1, "cancelled", "stopped")]
    assert "claim_after" not in (raw(core, task.id) or {})
    with pytest.raises(InvalidStateError, match="cancelled"):
        core.store.cancel(task.id, "default", NOW + 4)


def test_finish_cancelled_needs_a_request_and_the_lease(core: Enqueuer) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    assert not core.store.finish_cancelled(task.id, "default", claim.token, 1, "", NOW + 1)
    core.store.cancel(task.id, "default", NOW + 1)
    assert not core.store.finish_cancelled(task.id, "default", "not-ours", 1, "", NOW + 2)
    assert fetch(core, task.id).status is TaskStatus.RUNNING


@pytest.mark.parametrize("outcome", ["complete", "retry", "fail"])
def test_a_cancel_racing_the_outcome_exactly_one_wins(core: Enqueuer, outcome: str) -> None:
    def record(token: str, now: int) -> bool:
        if outcome == "complete":
            return core.store.complete(task.id, "default", token, "done", now)
        if outcome == "retry":
            return core.store.schedule_retry(
                task.id, "default", token, 1, "error", "boom", now + 60_000, now
            )
        return core.store.fail(task.id, "default", token, 1, "fail", "bad", now)

    # The outcome lands first: the cancel is refused and the outcome stands.
    task = stored(core)
    claim = claimed(core, task.id)
    assert record(claim.token, NOW + 1)
    if outcome == "retry":
        # Waiting to retry is not final: the cancel ends it at once, no retry follows.
        assert core.store.cancel(task.id, "default", NOW + 2).status is TaskStatus.CANCELLED
    else:
        with pytest.raises(InvalidStateError):
            core.store.cancel(task.id, "default", NOW + 2)
        assert fetch(core, task.id).status is not TaskStatus.CANCELLED

    # The request lands first: the outcome is refused, the holder records the cancel.
    task = stored(core)
    claim = claimed(core, task.id)
    assert core.store.cancel(task.id, "default", NOW + 1).status is TaskStatus.RUNNING
    assert not record(claim.token, NOW + 2)
    assert core.store.finish_cancelled(task.id, "default", claim.token, 1, "late", NOW + 3)
    got = fetch(core, task.id)
    assert (got.status, got.result, got.next_attempt_at) == (TaskStatus.CANCELLED, None, None)


def test_a_cancelled_running_task_released_unrun_is_cancelled_at_its_next_claim(
    core: Enqueuer,
) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    core.store.cancel(task.id, "default", NOW + 1)
    # A worker shutting down gives it back: runnable again, the request still on it.
    assert core.store.release(task.id, "default", claim.token)
    again = claimed(core, task.id, now_ms=NOW + 2)
    assert to_ms(again.task.cancel_requested_at) == NOW + 1
    # A cancel of it now (queued) ends it at once too.
    core.store.release(task.id, "default", again.token)
    assert core.store.cancel(task.id, "default", NOW + 3).status is TaskStatus.CANCELLED
    # Retried later, it runs: the old request is gone.
    assert core.store.requeue(task.id, "default", NOW + 4).cancel_requested_at is None


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
