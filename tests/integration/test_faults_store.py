"""Every conditional write under AWS faults (issue 23): an answer lost after the write
was applied, and throttling, injected into exactly that write by the emulator's fault
injector (local/faults.py). botocore retries; the retry meets its own earlier write,
which each path must recognise as its own success."""

from __future__ import annotations

import pytest

from stratoq.adapters.locks import Acquired, LockStore
from stratoq.adapters.store import Claimed, Renewal
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.services.enqueue import Enqueuer
from tests.integration.conftest import KINDS, Inject, once
from tests.support.store import LEASE, NOW, build, claimed, fetch, raw, stored


@pytest.mark.parametrize("kind", KINDS)
def test_a_claim_recognises_its_own_earlier_success(
    core: Enqueuer, inject: Inject, kind: str
) -> None:
    task = stored(core)
    inject(once("UpdateItem", kind))
    claim = core.store.claim(task.id, "default", NOW, LEASE)
    assert isinstance(claim, Claimed), claim
    assert claim.task.attempts == 1
    assert claim.took_over is False
    assert claim.previous_status is TaskStatus.QUEUED
    item = raw(core, task.id)
    assert item is not None
    assert (item["lease_token"], item["attempts"]) == (claim.token, 1)
    # The recognised claim is whole: it can be undone exactly.
    assert core.store.unclaim(claim)
    assert fetch(core, task.id).status is TaskStatus.QUEUED


def test_a_takeover_claim_whose_answer_was_lost_still_knows_it_took_over(
    core: Enqueuer, inject: Inject
) -> None:
    task = stored(core)
    claimed(core, task.id, lease_ms=1)
    inject(once("UpdateItem", "lost"))
    claim = core.store.claim(task.id, "default", NOW + 2, LEASE)
    assert isinstance(claim, Claimed), claim
    assert (claim.took_over, claim.task.attempts) == (True, 2)
    assert claim.previous_status is TaskStatus.RUNNING


@pytest.mark.parametrize("kind", KINDS)
def test_a_heartbeat_renews_under_faults(core: Enqueuer, inject: Inject, kind: str) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    inject(once("UpdateItem", kind))
    assert core.store.extend_lease(task.id, claim.token, NOW + 2 * LEASE) is Renewal.RENEWED


@pytest.mark.parametrize("kind", KINDS)
def test_a_completion_recognises_its_own_earlier_success(
    core: Enqueuer, inject: Inject, kind: str
) -> None:
    task = stored(core)
    claim = claimed(core, task.id)
    inject(once("UpdateItem", kind))
    assert core.store.complete(task.id, "default", claim.token, {"ok": 1}, NOW + 5)
    got = fetch(core, task.id)
    assert (got.status, got.result) == (TaskStatus.SUCCEEDED, {"ok": 1})
    # Still fenced: a heartbeat or a release of the finished attempt is refused.
    assert core.store.extend_lease(task.id, claim.token, NOW + LEASE) is Renewal.LOST
    assert not core.store.release(task.id, "default", claim.token)


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_and_a_failure_recognise_their_own_earlier_success(
    core: Enqueuer, inject: Inject, kind: str
) -> None:
    task = stored(core, max_attempts=2)
    claim = claimed(core, task.id)
    inject(once("UpdateItem", kind))
    assert core.store.schedule_retry(
        task.id, "default", claim.token, 1, "error", "boom", NOW + 1_000, NOW + 5
    )
    got = fetch(core, task.id)
    assert got.status is TaskStatus.RETRYING
    assert [(e.attempt, e.message) for e in got.errors] == [(1, "boom")]  # written once

    second = claimed(core, task.id, now_ms=NOW + 1_000)
    inject(once("UpdateItem", kind))
    assert core.store.fail(task.id, "default", second.token, 2, "error", "bang", NOW + 1_005)
    got = fetch(core, task.id)
    assert got.status is TaskStatus.FAILED
    assert [e.message for e in got.errors] == ["boom", "bang"]


def test_a_lost_retry_answer_is_recognised_after_the_next_claim(
    core: Enqueuer, inject: Inject
) -> None:
    """The recorded error entry identifies the write even once a new attempt holds the
    task (its token replaced ours)."""
    task = stored(core, max_attempts=3)
    claim = claimed(core, task.id)
    assert core.store.schedule_retry(task.id, "default", claim.token, 1, "error", "x", NOW, NOW)
    second = claimed(core, task.id, now_ms=NOW + 1)
    # The first attempt's write again (as its retry would send it): already applied.
    inject(once("UpdateItem", "throttle"))
    assert core.store.schedule_retry(task.id, "default", claim.token, 1, "error", "x", NOW, NOW)
    assert raw(core, task.id)["lease_token"] == second.token  # type: ignore[index]


@pytest.mark.parametrize("kind", KINDS)
def test_an_idempotent_create_recognises_its_own_earlier_success(
    core: Enqueuer, inject: Inject, kind: str
) -> None:
    task = build(core, idempotency_key="k1")
    inject(once("TransactWriteItems", kind))
    got, created = core.store.create(task, NOW)
    assert (got.id, created) == (task.id, True)
    again, created = core.store.create(build(core, idempotency_key="k1"), NOW + 1)
    assert (again.id, created) == (task.id, False)


@pytest.mark.parametrize("kind", KINDS)
def test_a_plain_create_recognises_its_own_earlier_success(
    core: Enqueuer, inject: Inject, kind: str
) -> None:
    task = build(core)
    inject(once("PutItem", kind))
    got, created = core.store.create(task, NOW)
    assert (got.id, created) == (task.id, True)
    assert fetch(core, task.id).status is TaskStatus.QUEUED


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_acquire_and_release_recognise_their_own_earlier_success(
    core: Enqueuer, inject: Inject, kind: str
) -> None:
    locks = LockStore(core.store.client, core.store.table)
    inject(once("UpdateItem", kind, match="if_not_exists(fence"))
    got = locks.acquire("t1", "db", "me", 10_000, NOW)
    assert isinstance(got, Acquired), got
    assert raw(core, "lock#t1#db")["fence"] == got.token  # type: ignore[index]
    inject(once("UpdateItem", kind, match="REMOVE"))
    assert locks.release(got, NOW + 1)
    # Released: anyone may take it now, with a newer token.
    again = locks.acquire("t1", "db", "other", 10_000, NOW + 2)
    assert isinstance(again, Acquired) and again.token > got.token


@pytest.mark.parametrize("kind", KINDS)
def test_a_listing_page_under_faults(core: Enqueuer, inject: Inject, kind: str) -> None:
    ids = {core.enqueue(TaskRequest(name="echo", payload={"i": i})).task.id for i in range(3)}
    inject(once("Query", kind))
    page, _ = core.store.list_tasks("default", limit=10)
    assert {t.id for t in page} == ids


@pytest.mark.parametrize("kind", ["lost", "throttle"])
def test_a_lost_attempt_note_is_written_once(core: Enqueuer, inject: Inject, kind: str) -> None:
    task = stored(core)
    claimed(core, task.id, lease_ms=1)
    second = claimed(core, task.id, now_ms=NOW + 2)
    inject(once("UpdateItem", kind))
    assert core.store.record_lost_attempt(task.id, second.token, 1, "lost", NOW + 3)
    assert [(e.attempt, e.kind) for e in fetch(core, task.id).errors] == [(1, "lost")]
