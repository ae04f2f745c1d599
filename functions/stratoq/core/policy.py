"""Pure decisions of the worker: retry or fail, how long to wait, when to hop.

Nothing here does I/O or reads a clock: callers pass `now` and a random source, so unit
tests drive every branch deterministically.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stratoq.core.models import (
    FINAL_STATUSES,
    MAX_SQS_DELAY,
    RUNNABLE_STATUSES,
    Backoff,
    TaskStatus,
)

# SQS ChangeMessageVisibility allows at most 12 hours.
MAX_VISIBILITY_SECONDS = 12 * 3600


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    ERROR = "error"  # the handler raised
    RETRY = "retry"  # the handler raised Retry(delay)
    FAIL = "fail"  # the handler raised Fail: no more attempts
    TIMEOUT = "timeout"  # stopped after timeout_seconds
    LOST = "lost"  # the worker died or lost its lease during the attempt
    UNKNOWN_TASK = "unknown_task"  # no handler registered under the task's name
    # The payload does not fit the model the handler takes (the handler never ran).
    INVALID_PAYLOAD = "invalid_payload"
    # A user cancelled the task while this attempt ran: it ends `cancelled`, no retry.
    CANCELLED = "cancelled"


# Outcomes that never deserve another attempt: the same input fails the same way.
PERMANENT = frozenset({OutcomeKind.FAIL, OutcomeKind.UNKNOWN_TASK, OutcomeKind.INVALID_PAYLOAD})


@dataclass(frozen=True)
class Outcome:
    """What one attempt produced."""

    kind: OutcomeKind
    result: Any = None
    message: str = ""
    retry_delay: float | None = None
    # What a successful handler spawned (TaskRequests, WorkflowRequests), in order.
    children: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Complete:
    result: Any
    children: tuple[Any, ...] = ()


@dataclass(frozen=True)
class RetryLater:
    delay_seconds: int
    kind: OutcomeKind
    message: str


@dataclass(frozen=True)
class FailNow:
    kind: OutcomeKind
    message: str


Decision = Complete | RetryLater | FailNow


def backoff_delay(attempt: int, backoff: Backoff, rng: random.Random | None = None) -> float:
    """Delay before the attempt after `attempt` (1-based).

    Exponential: base * 2**(attempt-1), capped at max_seconds. With jitter the delay is
    drawn uniformly from [d/2, d] ("equal jitter"): retries of many tasks that failed
    together spread out, yet each waits at least half the nominal delay.
    """
    exponent = min(max(attempt - 1, 0), 62)
    nominal = min(backoff.max_seconds, backoff.base_seconds * (2.0**exponent))
    if not backoff.jitter or nominal <= 0:
        return nominal
    return nominal / 2 + (rng or random).uniform(0, nominal / 2)


def decide(
    outcome: Outcome,
    attempt: int,
    max_attempts: int,
    backoff: Backoff,
    rng: random.Random | None = None,
) -> Decision:
    """Turn an attempt's outcome into what to record: done, retry after a delay, or failed."""
    if outcome.kind is OutcomeKind.SUCCESS:
        return Complete(outcome.result, outcome.children)
    if outcome.kind in PERMANENT:
        return FailNow(outcome.kind, outcome.message)
    if attempt >= max_attempts:
        return FailNow(outcome.kind, outcome.message)
    if outcome.kind is OutcomeKind.RETRY and outcome.retry_delay is not None:
        delay = outcome.retry_delay
    else:
        delay = backoff_delay(attempt, backoff, rng)
    return RetryLater(max(0, math.ceil(delay)), outcome.kind, outcome.message)


def hop_delay(not_before_ms: int, now_ms: int) -> int:
    """SQS delay for a message that arrived before its task is due (at most 15 minutes).

    Long waits are a chain of such hops, so nothing is held in worker memory and a
    restart of every process loses nothing.
    """
    return max(0, min(MAX_SQS_DELAY, math.ceil((not_before_ms - now_ms) / 1000)))


# A token due within this long (ms) is waited for in the worker, before the claim (no
# lease or concurrency slot held meanwhile): the fraction of a second SQS cannot delay.
TOKEN_SLEEP_MS = 1000


@dataclass(frozen=True)
class StartAfter:
    """Start the task after sleeping `ms` (0: at once)."""

    ms: int = 0


@dataclass(frozen=True)
class HandBackFor:
    """Hand the task back unclaimed for `seconds` (an SQS delay, rounded down)."""

    seconds: int


def token_delay(due_ms: int, now: int) -> int:
    """The SQS delay of a message going towards its token at `due_ms`: whole seconds
    rounded DOWN (at most 15 minutes, then another hop), so the message comes less than a
    second before its token and the worker sleeps out the rest (`token_wait`). Rounded
    up, tasks would start in bunches up to a second after their tokens."""
    return max(0, min(MAX_SQS_DELAY, (due_ms - now) // 1000))


def token_wait(due_ms: int, now: int) -> StartAfter | HandBackFor:
    """What a worker does with a task whose rate-limit token is its own at `due_ms`, at
    `now` (epoch ms, the caller's clock): start now, sleep up to TOKEN_SLEEP_MS and then
    start, or hand it back until less than a second before its token. Never a start
    before the token."""
    wait = due_ms - now
    if wait <= 0:
        return StartAfter(0)
    if wait <= TOKEN_SLEEP_MS:
        return StartAfter(wait)
    return HandBackFor(token_delay(due_ms, now))


def is_due(not_before_ms: int | None, now_ms: int) -> bool:
    # Up to a second early is fine: SQS delays have whole-second resolution.
    return not_before_ms is None or not_before_ms <= now_ms + 1000


def busy_release_delay(lease_expires_ms: int, now_ms: int) -> int:
    """Visibility to give a message whose task another worker holds: until its lease ends."""
    remaining = math.ceil((lease_expires_ms - now_ms) / 1000) + 1
    return max(1, min(MAX_VISIBILITY_SECONDS, remaining))


# Longest wait before a task whose lock is held looks again. The holder usually releases
# well before its hold would end (the hold is a lease, renewed while it runs), so a long
# hold must not park waiters for long after an early release.
MAX_LOCKED_DELAY = 60


def locked_delay(
    holder_until_ms: int,
    now_ms: int,
    rng: random.Random | None = None,
    cap: int = MAX_LOCKED_DELAY,
) -> int:
    """Seconds until a task whose lock is held tries again (its message's SQS delay).

    The holder's remaining hold bounds the wait: by then it has released the lock or
    crashed, and an ended hold is free. "Full jitter" in [1, remaining + 1] spreads the
    waiters of one lock over that span, so they do not all return in the same second
    only to collide again; at least 1 s (SQS delays are whole seconds), at most `cap`
    (and the 15-minute SQS delay limit).
    """
    remaining = max(0, math.ceil((holder_until_ms - now_ms) / 1000))
    upper = max(1, min(remaining + 1, cap, MAX_SQS_DELAY))
    return (rng or random).randint(1, upper)


# Longest pause between two hand-backs of a task this worker has no handler for.
MAX_UNKNOWN_DELAY = 30


def unknown_task_delay(
    first_seen_ms: int, now_ms: int, grace_ms: int, rng: random.Random | None = None
) -> int | None:
    """Seconds until a task whose name this worker does not know is offered again, or
    None: the grace period is over and the task fails as `unknown_task`.

    The pause grows slowly with the time handed back so far (1-2 s in the first minute,
    2-4 s in the second, up to 30-60 s after half an hour), so a worker that knows the
    name, sharing the queue, gets many chances to receive it soon, while a name no worker
    knows costs a bounded number of messages over a long grace period. Jitter keeps a
    flood of such tasks from coming back in one wave. The last pause ends at the end of
    the grace period, give or take a second, not up to a minute after it.
    """
    waited = now_ms - first_seen_ms
    if waited >= grace_ms:
        return None
    delay = waiting_delay(waited, MAX_UNKNOWN_DELAY, rng)
    return max(1, min(delay, math.ceil((grace_ms - waited) / 1000)))


def waiting_delay(waited_ms: int, cap: int, rng: random.Random | None = None) -> int:
    """Seconds until a task handed back unspent (no claim, no attempt) is offered again,
    given how long it has been handed back so far.

    The pause grows by a second per minute waited, up to `cap`, plus full jitter of as
    much again (1-2 s in the first minute, 2-4 s in the second, up to `cap`-2*`cap`):
    short waits end soon after their cause does, long ones cost few messages, and a
    flood handed back at once does not come back in one wave. Every unspent wait
    (unknown name, paused; later no concurrency slot, no rate token) backs off so.
    """
    base = max(1, min(cap, 1 + max(0, waited_ms) // 60_000))
    return base + (rng or random).randint(0, base)


class WaitReason(StrEnum):
    """Why a task is handed back unspent (no claim, no attempt) to wait. Each reason
    has its own cap on the hand-back delay (`wait_delay`)."""

    PAUSED = "paused"  # its queue or task name is paused
    CONCURRENCY = "concurrency"  # every slot of one of its concurrency limits is held
    # Its rate limit's bucket could not be updated (contention, errors): a task that got
    # a token comes back when it is due instead, a delay the deficit decides.
    RATE_LIMITED = "rate_limited"


# Longest pause (before jitter, which at most doubles it) between two hand-backs, per
# reason. Paused: after a resume, work continues within the pause cache's TTL plus at
# most twice this; long enough that a paused backlog costs few messages (one per task
# every 10-20 s once paused ten minutes), short enough that a resume acts within 30 s.
# Concurrency: a backlog behind a small limit waits long, so its tasks come back at most
# every 30-60 s (1,000 waiting tasks cost ~25 messages a second), while the many waiters
# returning at random times still find a freed slot within seconds. Rate limited: the
# bucket write is retried within seconds.
WAIT_CAPS: dict[WaitReason, int] = {
    WaitReason.PAUSED: 10,
    WaitReason.CONCURRENCY: 30,
    WaitReason.RATE_LIMITED: 10,
}


def wait_delay(
    reason: WaitReason, waiting_since_ms: int, now_ms: int, rng: random.Random | None = None
) -> int:
    """Seconds until a task handed back to wait for `reason` is offered again, given
    when it was first handed back for it (1-2 s at first, growing to its cap)."""
    return waiting_delay(now_ms - waiting_since_ms, WAIT_CAPS[reason], rng)


# Re-reads of a task while `GET /v1/tasks/{id}?wait=` waits for it to end: the first
# come fast (a short task is answered within ~50 ms of ending), later ones slow down to
# a fixed pace, so a 20 s wait costs about 50 reads rather than 400.
RECHECK_MIN_SECONDS = 0.05
RECHECK_MAX_SECONDS = 0.5


def recheck_delay(started: float, now: float, deadline: float) -> float | None:
    """Seconds to sleep before reading a waited-for task again, or None when the wait
    is over (`now` at or past `deadline`). Times are one clock's readings (monotonic
    seconds), passed in so tests drive the schedule without sleeping.

    The pause is a quarter of the time waited so far, within 50-500 ms, and never
    beyond the deadline: the answer comes when the time is up, not a pause later.
    """
    left = deadline - now
    if left <= 0:
        return None
    pause = min(RECHECK_MAX_SECONDS, max(RECHECK_MIN_SECONDS, (now - started) / 4))
    return min(pause, left)


# Progress reports of a running task reach the store at most once per this interval.
PROGRESS_INTERVAL_MS = 1000


def progress_due(last_write_ms: int | None, now_ms: int) -> bool:
    """Whether a progress report made at `now_ms` is written now (else it is held back,
    a newer report replacing it, until the interval since the last write is over).

    The first report of an attempt is written at once; after that at most one write per
    `PROGRESS_INTERVAL_MS`, so a handler reporting in a tight loop costs about one write
    a second, not one per report.
    """
    return last_write_ms is None or now_ms - last_write_ms >= PROGRESS_INTERVAL_MS


# Inline re-reads (ms to wait before each) of a task whose message came before its
# record: the enqueuer sends first and stores right after, so at light load a poller
# long-polling every queue can receive the message a few ms before the write lands. Tens
# of ms in all: a miss costs this much latency on one slot, a hand-back at least a second.
MISSING_REREADS_MS = (10, 20, 40)
# Only a message this fresh (ms since its enqueue) is re-read inline; an older one has
# been handed back already, or its write is slow (throttled) and a hand-back suits it.
REREAD_WITHIN_MS = 1000


def orphan_delay(enqueued_ms: int, now_ms: int, grace_ms: int) -> int | None:
    """Seconds until a message whose task record does not exist (yet) is offered again,
    or None: the grace period since its enqueue is over, so its enqueuer died (or failed)
    before storing the task, the caller never got an answer, and the message is dropped.

    The pause doubles with the time since the enqueue (1, 1, 2, 4, 8 ... s): a record
    that lands late (a throttled write retried for seconds) is found soon after, and an
    orphan costs about log2(grace) messages, ~9 for 5 minutes. The last pause ends at
    the end of the grace period, so the drop is on time.
    """
    waited = max(0, now_ms - enqueued_ms)
    if waited >= grace_ms:
        return None
    delay = max(1, min(MAX_SQS_DELAY, waited // 1000))
    return max(1, min(delay, math.ceil((grace_ms - waited) / 1000)))


# A running attempt learns of a cancel request at most this long after it is made: a
# poller's heartbeat runs at least this often, and an inline attempt (Lambda) checks as
# often. It also bounds how long a Lambda handler has to stop by itself once it sees
# the flag before the worker stops waiting for it.
CANCEL_CHECK_SECONDS = 5


def heartbeat_seconds(lease_seconds: int) -> float:
    """How often a poller renews its running tasks' leases: three times a lease, so two
    renewals can fail before it lapses, and at least every CANCEL_CHECK_SECONDS, because
    the renewal is also how an attempt learns it was cancelled."""
    return max(0.5, min(lease_seconds / 3, CANCEL_CHECK_SECONDS))


class CancelAction(StrEnum):
    """What cancelling a task in a given status does."""

    NOW = "now"  # not started (or waiting to retry): it ends `cancelled` at once
    REQUEST = "request"  # running: a request its worker sees at the next check
    REFUSE = "refuse"  # already final


def cancel_action(status: TaskStatus) -> CancelAction:
    """The cancel a task in `status` gets (see CancelAction)."""
    if status in RUNNABLE_STATUSES:
        return CancelAction.NOW
    if status is TaskStatus.RUNNING:
        return CancelAction.REQUEST
    assert status in FINAL_STATUSES
    return CancelAction.REFUSE
