"""Concurrency and rate limits: what a message must wait for, decided without I/O.

A task's limits come from two places. The task itself (`TaskRequest.concurrency_key`,
`max_concurrency`, `rate_limit`, `rate_limit_key`, or its `@task` options) names limits
of its tenant: per key, or per task name when it gives a limit without a key. The
operator sets limits on a queue or a task name for every tenant (`stratoq.api.limits`),
which workers read through a cache like the pause state. Each limit has a *scope*, the
string its DynamoDB items are named after (`stratoq.adapters.limits`).

Concurrency: a scope with limit N has N slot items; a task runs only while it holds one
slot of every scope that applies. Rate: a scope has one token bucket; a task takes a
token of every bucket that applies before it starts. Both are shared by every worker.

Pure: clocks and randomness are passed in, so unit tests drive every branch.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from stratoq.core.clock import now_ms

logger = logging.getLogger(__name__)

# A concurrency limit, at most: a full scope costs one read per `SLOT_READ_BATCH` slots.
MAX_CONCURRENCY = 1000
# Slots one BatchGetItem reads (DynamoDB's own limit).
SLOT_READ_BATCH = 100
# A concurrency or rate-limit key, at most (as `lock_key`).
MAX_KEY_LENGTH = 256
# A rate's count, at most.
MAX_RATE_COUNT = 1_000_000

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class Rate:
    """`count` tokens per `period_ms`: "10/s" is Rate(10, 1000)."""

    count: int
    period_ms: int

    @property
    def per_ms(self) -> float:
        return self.count / self.period_ms

    @property
    def interval_ms(self) -> float:
        """The time between two tokens: "10/s" is one start every 100 ms, "1000/h" one
        every 3.6 s (never 1000 at once after an idle hour)."""
        return self.period_ms / self.count

    def __str__(self) -> str:
        unit = next(u for u, ms in _UNITS_MS.items() if ms == self.period_ms)
        return f"{self.count}/{unit}"


def parse_rate(text: str) -> Rate:
    """ "10/s", "60/m", "1000/h", "5/d" as a Rate; ValueError with a sentence otherwise."""
    found = _RATE.match(text)
    if found is None:
        raise ValueError(f"{text!r} is not a rate: write a count and a unit, like 10/s or 1000/h")
    count, unit = int(found.group(1)), found.group(2)
    if unit not in _UNITS_MS:
        raise ValueError(f"unknown rate unit {unit!r} in {text!r}: use s, m, h or d")
    if not 1 <= count <= MAX_RATE_COUNT:
        raise ValueError(f"a rate's count is 1 to {MAX_RATE_COUNT}, not {count}")
    return Rate(count, _UNITS_MS[unit])


def check_rate(text: str | None) -> str | None:
    """A pydantic validator's body: the rate in its canonical form ("10/s")."""
    return None if text is None else str(parse_rate(text))


# ------------------------------------------------------------------ token bucket
# A token bucket kept as the time its next token comes due (`tat`, as in the generic cell
# rate algorithm): a bucket that holds one token. Taking a token moves `tat` one interval
# on from the later of itself and now, and the token is the taker's at the earlier of
# the two: at once when the bucket is idle, else at `tat`. A token not there yet is
# still taken, so each waiting task has its own start time and comes back once, when
# its token is its own, instead of every waiter polling the bucket.

# A task back this long after its token's time takes a new one rather than start late:
# starting every late task at once would burst over the rate after workers fell behind
# (a flood of hand-backs, a poller restart). A message comes before its token
# (`token_delay`), but a worker with no free slot receives it late.
LATE_MS = 3000
# A token due this soon (ms) is not shown as a wait (`waiting_for`): not worth a write.
SHORT_WAIT_MS = 50


def take(tat: float | None, rate: Rate, now: int, count: int = 1) -> tuple[float, list[int]]:
    """Take the bucket's next `count` tokens: its new `tat` and when each token is the
    caller's (epoch ms, `now` at the earliest, one interval apart). `tat` None: a bucket
    never used (or expired)."""
    first = now if tat is None or tat <= now else tat
    dues = [math.ceil(first + i * rate.interval_ms) for i in range(count)]
    return first + count * rate.interval_ms, dues


def late(paid_ms: int, now: int) -> bool:
    """Whether a task whose token came due at `paid_ms` is too late to use it."""
    return now - paid_ms > LATE_MS


# ------------------------------------------------------------------ slots
def slot_order(holders: Mapping[int, int], limit: int, now: int, rng: random.Random) -> list[int]:
    """The slots of a scope with `limit` slots to try, in order: the free ones (no
    holder in `holders`, a map of slot -> end of hold in ms, or a hold ended by `now`),
    shuffled so that racing workers spread over them instead of all fighting for slot 0.
    Empty: every slot is held."""
    free = [i for i in range(limit) if holders.get(i, 0) <= now]
    rng.shuffle(free)
    return free


def earliest_end(holders: Mapping[int, int], now: int) -> int | None:
    """When the first current hold ends (None: no current hold)."""
    ends = [until for until in holders.values() if until > now]
    return min(ends) if ends else None


# ------------------------------------------------------------------ scopes
@dataclass(frozen=True)
class Limits:
    """The operator's limits of one queue or task name (None: no such limit)."""

    max_concurrency: int | None = None
    rate_limit: str | None = None

    @property
    def empty(self) -> bool:
        return self.max_concurrency is None and self.rate_limit is None


@dataclass(frozen=True)
class LimitsState:
    """Every operator limit: per logical queue and per task name."""

    queues: Mapping[str, Limits] = field(default_factory=dict)
    task_names: Mapping[str, Limits] = field(default_factory=dict)


NO_LIMITS = LimitsState()


@dataclass(frozen=True)
class TaskLimits:
    """The limits a task carries in its message (from its request or `@task` options)."""

    concurrency_key: str | None = None
    max_concurrency: int | None = None
    rate_limit: str | None = None
    rate_limit_key: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a message must get before it runs: a slot of each `slots` scope (scope,
    limit) and a token of each `buckets` scope (scope, rate)."""

    slots: tuple[tuple[str, int], ...] = ()
    buckets: tuple[tuple[str, Rate], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.slots and not self.buckets


NOTHING = Plan()


def plan(tenant: str, name: str | None, queue: str, own: TaskLimits, state: LimitsState) -> Plan:
    """The scopes limiting a task of `tenant`, `name` and logical `queue`.

    A task's own key is its tenant's (tenants cannot reach each other's slots); a limit
    without a key counts the tenant's tasks of that name. Operator limits count every
    tenant's tasks. Tenants and names contain no ":", so scopes never collide.
    """
    slots: list[tuple[str, int]] = []
    buckets: list[tuple[str, Rate]] = []
    if own.max_concurrency is not None and name is not None:
        key = own.concurrency_key
        scope = f"key:{tenant}:{key}" if key is not None else f"task:{tenant}:{name}"
        slots.append((scope, own.max_concurrency))
    if own.rate_limit is not None and name is not None:
        key = own.rate_limit_key
        scope = f"key:{tenant}:{key}" if key is not None else f"task:{tenant}:{name}"
        buckets.append((scope, parse_rate(own.rate_limit)))
    operator = [(f"queue:{queue}", state.queues.get(queue))]
    if name is not None:
        operator.append((f"name:{name}", state.task_names.get(name)))
    for scope, limits in operator:
        if limits is None:
            continue
        if limits.max_concurrency is not None:
            slots.append((scope, limits.max_concurrency))
        if limits.rate_limit is not None:
            buckets.append((scope, parse_rate(limits.rate_limit)))
    return Plan(tuple(slots), tuple(buckets))


# ------------------------------------------------------------------ the cache
T = TypeVar("T")

# Workers' default for STRATOQ_PAUSE_CACHE_SECONDS, which bounds this cache too.
DEFAULT_TTL_SECONDS = 5


class TtlCache(Generic[T]):
    """`get()`: a value read through `read` at most once per `ttl_ms`; a failed read
    keeps the last value known (`initial` before the first success) and is tried again
    a TTL later. Thread-safe: one of a poller's slots reads, the others wait."""

    def __init__(
        self,
        read: Callable[[], T],
        initial: T,
        ttl_ms: int = DEFAULT_TTL_SECONDS * 1000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._read = read
        self._value = initial
        self.ttl_ms = max(0, ttl_ms)
        self._clock = clock
        self._read_at: int | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value as of at most `ttl_ms` ago (or the last one known, if reads fail)."""
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self.ttl_ms:
                return self._value
            try:
                self._value = self._read()
            except Exception:
                logger.warning("reading the limits failed; using the last ones known")
            self._read_at = now
            return self._value
