"""TaskStore against the emulator: listing, pages and tokens (`adapters.store.listing`).

Time is explicit: every call gets its `now_ms`, so leases expire and retries fall due by
passing a later value, never by waiting (helpers in tests/support/store.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from stratoq.core.clock import from_ms
from stratoq.core.models import Task, TaskStatus
from stratoq.services.enqueue import Enqueuer
from tests.support.store import NOW, OTHER, build, claimed


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
