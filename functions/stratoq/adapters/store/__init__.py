"""DynamoDB task repository, split by job (`TaskStore` combines the parts).

One table, partition key `pk`. Item kinds:
- a task: `pk` = task id;
- an idempotency record: `pk` = "idem#<tenant>#<key>", pointing at the task it created.
- a lock: `pk` = "lock#<tenant>#<name>" (`adapters.locks`: fencing counter, holder, hold end).
- a listing page: `pk` = "page#<id>", the ids of tasks created together in one batch.
- a debounce item: `pk` = "debounce#<tenant>#<key>", the key's latest task
  (`adapters.debounce`).
  (Unique keys of later features live beside them under their own prefixes.)

GSI `listing` (`listed` = tenant, `created_at`, keys only) lists a tenant's tasks, newest
first. A task created alone carries `listed` itself; tasks created in a batch do not: the
batch's page does, so one index entry (and one item of 1.6 KB per 100 ids) lists
them all, which saves a write unit per batched task (4 -> 3.03 per task, claim and
completion included). An index entry is written once, at creation. GSI `by-status`
(`gsi1pk` = "<tenant>#failed", `created_at`) is sparse: only failed tasks carry its key,
so dead tasks are found at once while the hot path (claim, complete) writes no index.
Other statuses are listed through `listing` and filtered.

`claim_after` (epoch ms) is the one attribute a claim tests: for a runnable task it is
when the task is due, for a running one when its lease ends (plus a second), and it is
absent once the task is final. One comparison keeps the claim cheap to evaluate.

Every state change after creation is a conditional UpdateItem; the condition says which
race it guards against. Times are epoch milliseconds. Payload and result are ciphertext
(binary, `stratoq.adapters.crypto`: KMS envelope encryption bound to tenant and task id) when the
store has a cipher, else JSON text.

The parts: `codec` (item <-> Task, listing pages), `records` (creation, idempotency
records), `listing` (listing pages, GSI queries, next_token), `leases` (claim and the
lease holder's fenced writes), `transitions` (cancel and retry by users); `base` holds
what they share.
"""

from __future__ import annotations

from stratoq.adapters.store.base import IDEMPOTENCY_WINDOW_MS
from stratoq.adapters.store.codec import PAGE_PREFIX, PAGE_SIZE, item_to_task, task_to_item
from stratoq.adapters.store.leases import (
    EARLY_MS,
    LEASE_SLACK_MS,
    MAX_ERROR_CHARS,
    Claimed,
    ClaimResult,
    NotClaimed,
    Renewal,
    TaskLeases,
)
from stratoq.adapters.store.listing import UNKNOWN_PAGE, TaskListing, encode_page_token
from stratoq.adapters.store.records import TaskRecords
from stratoq.adapters.store.transitions import TaskTransitions

__all__ = [
    "EARLY_MS",
    "IDEMPOTENCY_WINDOW_MS",
    "LEASE_SLACK_MS",
    "MAX_ERROR_CHARS",
    "PAGE_PREFIX",
    "PAGE_SIZE",
    "UNKNOWN_PAGE",
    "ClaimResult",
    "Claimed",
    "NotClaimed",
    "Renewal",
    "TaskStore",
    "encode_page_token",
    "item_to_task",
    "task_to_item",
]


class TaskStore(TaskRecords, TaskListing, TaskLeases, TaskTransitions):
    """Reads and conditional writes of task state in one DynamoDB table."""
