"""TaskStore against the emulator: creation and idempotency (`adapters.store.records`).

Time is explicit: every call gets its `now_ms`, so leases expire and retries fall due by
passing a later value, never by waiting (helpers in tests/support/store.py).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from stratoq.adapters.store import TaskStore
from stratoq.core.clock import to_ms
from stratoq.core.models import Backoff, Priority, TaskStatus
from stratoq.services.enqueue import Enqueuer
from tests.support.store import NOW, OTHER, build, fetch, item_count, stored


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
    store = TaskStore(core.store.client, core.store.table, idempotency_window_ms=1)
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
