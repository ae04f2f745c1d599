"""Deduplication against the emulator: idempotency windows, `unique` tasks, batches."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stratoq.adapters import aws
from stratoq.adapters.store import TaskStore
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import pump_until_final, queue_counts

NOW = 1_800_000_000_000  # fixed and in the future: no TTL can remove anything


def req(name: str = "echo", payload: Any = None, **options: Any) -> TaskRequest:
    return TaskRequest(name=name, payload=payload, **options)


def messages(core: Enqueuer) -> int:
    counts = queue_counts(core)
    return counts["visible"] + counts["delayed"] + counts["in_flight"]


# ------------------------------------------------------------------- windows
def test_a_record_past_its_window_is_free_before_ttl_removes_it(core: Enqueuer) -> None:
    # An injected clock: the store is given `now` explicitly, with a 5 s window.
    store = TaskStore(aws.dynamodb(core.settings), core.store.table, idempotency_window_ms=5_000)
    first, created = store.create(core.build(req(idempotency_key="w")), NOW)
    assert created
    held, created = store.create(core.build(req(idempotency_key="w")), NOW + 5_000)
    assert (held.id, created) == (first.id, False)  # the window's last millisecond
    later = core.build(req(idempotency_key="w"))
    again, created = store.create(later, NOW + 5_001)
    assert created and again.id == later.id != first.id
    # The record was replaced in place (TTL never ran): it now names the new task.
    record = aws.dynamodb(core.settings).get_item(
        TableName=core.store.table, Key={"pk": {"S": "idem#default#w"}}, ConsistentRead=True
    )["Item"]
    assert record["task_id"]["S"] == later.id


def test_a_finished_task_still_holds_its_key(core: Enqueuer) -> None:
    worker = Worker(core.store, core.transport, InlineRunner())
    first = core.enqueue(req(payload={"n": 1}, idempotency_key="done-once"))
    [done] = pump_until_final(core, worker, [first.task.id])
    assert done.status is TaskStatus.SUCCEEDED
    repeat = core.enqueue(req(payload={"n": 2}, idempotency_key="done-once"))
    assert repeat.created is False
    assert repeat.task.id == first.task.id
    assert repeat.task.status is TaskStatus.SUCCEEDED
    assert repeat.task.result == {"n": 1}
    assert messages(core) == 0  # a finished task's repeat sends nothing


def window_of(core: Enqueuer, key: str, tenant: str = "default") -> int:
    """The milliseconds the key's record holds, from its task's creation (as stored)."""
    record = aws.dynamodb(core.settings).get_item(
        TableName=core.store.table, Key={"pk": {"S": f"idem#{tenant}#{key}"}}, ConsistentRead=True
    )["Item"]
    task = core.store.get(record["task_id"]["S"], tenant)
    assert task is not None
    return int(record["window_ends"]["N"]) - int(task.created_at.timestamp() * 1000)


def test_a_per_request_window_is_the_one_stored(core: Enqueuer) -> None:
    # Expiry itself is tested at fixed times above; here: the request's window reaches
    # the record, and a repeat within it returns the first task.
    first = core.enqueue(req(idempotency_key="short", idempotency_window_seconds=60))
    assert window_of(core, "short") == 60_000
    assert core.enqueue(req(idempotency_key="short")).task.id == first.task.id


def test_the_deployment_window_is_the_default(core: Enqueuer) -> None:
    short = Enqueuer(
        TaskStore(aws.dynamodb(core.settings), core.store.table, idempotency_window_ms=5_000),
        core.transport,
        core.settings,
    )
    short.enqueue(req(idempotency_key="dflt"))
    assert window_of(core, "dflt") == 5_000
    # A window asked for by the request wins over the deployment's.
    short.enqueue(req(idempotency_key="long", idempotency_window_seconds=3600))
    assert window_of(core, "long") == 3_600_000


def test_a_record_whose_task_expired_is_free(core: Enqueuer) -> None:
    first = core.enqueue(req(idempotency_key="orphan"))
    # TTL removed the finished task (retention shorter than the window); the record stays.
    aws.dynamodb(core.settings).delete_item(
        TableName=core.store.table, Key={"pk": {"S": first.task.id}}
    )
    again = core.enqueue(req(idempotency_key="orphan"))
    assert again.created and again.task.id != first.task.id
    assert core.enqueue(req(idempotency_key="orphan")).task.id == again.task.id


# -------------------------------------------------------------------- unique
def test_unique_tasks_match_on_name_and_canonical_payload(core: Enqueuer) -> None:
    first = core.enqueue(req("echo", {"a": 1, "b": 2}, unique=True))
    same = core.enqueue(req("echo", {"b": 2, "a": 1}, unique=True, queue="default"))
    assert (same.created, same.task.id) == (False, first.task.id)
    assert first.task.idempotency_key is not None
    assert first.task.idempotency_key.startswith("unique:")
    # Another payload, another name, or a plain request: other tasks.
    assert core.enqueue(req("echo", {"a": 1, "b": 3}, unique=True)).created
    assert core.enqueue(req("sleep", {"a": 1, "b": 2}, unique=True)).created
    assert core.enqueue(req("echo", {"a": 1, "b": 2})).created
    # Nested keys are canonical too; priority and delay do not make it new work.
    nested = core.enqueue(req("echo", {"x": {"k": 1, "j": [1, {"z": 0, "y": 1}]}}, unique=True))
    repeat = core.enqueue(
        req(
            "echo",
            {"x": {"j": [1, {"y": 1, "z": 0}], "k": 1}},
            unique=True,
            priority="high",
            delay_seconds=30,
        )
    )
    assert (repeat.created, repeat.task.id) == (False, nested.task.id)


def test_unique_and_an_explicit_key_are_refused_together() -> None:
    with pytest.raises(ValidationError) as info:
        req(unique=True, idempotency_key="k")
    assert info.value.errors()[0]["loc"] == ("unique",)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"idempotency_key": "k", "idempotency_window_seconds": 0}, "idempotency_window_seconds"),
        (
            {"idempotency_key": "k", "idempotency_window_seconds": 7 * 86400 + 1},
            "idempotency_window_seconds",
        ),
        ({"idempotency_window_seconds": 60}, "idempotency_window_seconds"),
    ],
)
def test_window_bounds(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        req(**options)
    assert info.value.errors()[0]["loc"] == (field,)


def test_a_week_long_window_is_accepted() -> None:
    assert req(unique=True, idempotency_window_seconds=7 * 86400).idempotency_window_seconds


# ------------------------------------------------------------------- batches
def test_a_batch_deduplicates_within_itself_and_against_earlier_batches(
    core: Enqueuer,
) -> None:
    batch = [
        req("echo", {"a": 1, "b": 2}, unique=True),
        req("echo", {"b": 2, "a": 1}, unique=True),  # the same unique task
        req("echo", {"plain": 1}),
        req("echo", {"k": 1}, idempotency_key="k1"),
        req("echo", {"k": 2}, idempotency_key="k1"),  # the same key
        req("echo", {"plain": 1}),  # plain tasks are never deduplicated
    ]
    results = core.enqueue_many(batch)
    assert [r.created for r in results] == [True, False, True, True, False, True]
    assert results[1].task.id == results[0].task.id
    assert results[4].task.id == results[3].task.id
    assert results[4].task.payload == {"k": 1}  # the first entry decided
    assert len({r.task.id for r in results}) == 4
    assert messages(core) == 4  # one message per task, none for the repeats

    again = core.enqueue_many(batch)
    assert [r.created for r in again] == [False, False, True, False, False, True]
    assert again[0].task.id == results[0].task.id
    assert again[3].task.id == results[3].task.id
    # Repeats of never-started tasks send their message again (a caller retrying after
    # a failed send); the claim deduplicates the deliveries.
    worker = Worker(core.store, core.transport, InlineRunner())
    ids = {r.task.id for r in results + again}
    done = pump_until_final(core, worker, ids)
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in done)
