"""Priorities: how (queue, priority) names an SQS queue, and which queue a poller reads next.

Each logical queue has up to three SQS queues, named in `STRATOQ_QUEUES` by key:
`<queue>` (default priority; the name it always had, so nothing existing moves),
`<queue>:high` and `<queue>:low`. A priority without its own queue falls back to the
logical queue's default one, so a deployment configured before priorities existed keeps
working unchanged.

Everything here is pure (the randomness is injected), so the choice of queue can be
tested without SQS and without luck.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from enum import StrEnum

from stratoq.core.errors import ConfigError

HIGH, DEFAULT, LOW = "high", "default", "low"
# Highest first: the order strict mode drains them in.
PRIORITIES: tuple[str, ...] = (HIGH, DEFAULT, LOW)
DEFAULT_WEIGHTS: tuple[int, int, int] = (6, 3, 1)
SEPARATOR = ":"
MAX_WEIGHT = 1000


class PriorityMode(StrEnum):
    """How a poller shares its receives between priority queues."""

    WEIGHTED = "weighted"  # each receive picks a queue at random in proportion to weights
    STRICT = "strict"  # high while it has messages, then default, then low


def queue_key(queue: str, priority: str = DEFAULT) -> str:
    """The STRATOQ_QUEUES key of a logical queue's priority queue."""
    return queue if priority == DEFAULT else f"{queue}{SEPARATOR}{priority}"


def split_key(key: str) -> tuple[str, str]:
    """(logical queue, priority) of a STRATOQ_QUEUES key."""
    queue, sep, priority = key.rpartition(SEPARATOR)
    if sep and priority in (HIGH, LOW):
        return queue, priority
    return key, DEFAULT


def check_keys(keys: Collection[str]) -> None:
    """Refuse keys that name an unknown priority or a priority queue without its default."""
    for key in keys:
        queue, sep, priority = key.rpartition(SEPARATOR)
        if not sep:
            continue
        if priority not in (HIGH, LOW) or not queue:
            raise ConfigError(
                f"STRATOQ_QUEUES key {key!r}: a priority queue is named <queue>:high or "
                "<queue>:low (the default priority uses the bare queue name)"
            )
        if queue not in keys:
            raise ConfigError(
                f"STRATOQ_QUEUES has {key!r} but not {queue!r}: every logical queue needs "
                "its default-priority queue"
            )


def logical_queues(keys: Iterable[str]) -> list[str]:
    """The logical queues of some keys, in first-seen order, each once."""
    return list(dict.fromkeys(split_key(k)[0] for k in keys))


def route(keys: Collection[str], queue: str, priority: str) -> str:
    """The key a task of (queue, priority) is sent to: its priority queue if configured,
    else the logical queue's default queue."""
    key = queue_key(queue, priority)
    return key if key in keys else queue


def expand(keys: Sequence[str], names: Iterable[str]) -> list[str]:
    """The keys to poll for `names`: a logical queue means all of its priority queues,
    a key (`default:high`) means just that one. Ordered by priority, then by name."""
    wanted: list[str] = []
    for name in names:
        if name in keys and split_key(name)[1] != DEFAULT:
            wanted.append(name)
        else:
            wanted += [k for k in keys if split_key(k)[0] == name]
    unique = list(dict.fromkeys(wanted))
    return sorted(unique, key=lambda k: PRIORITIES.index(split_key(k)[1]))


def parse_mode(raw: str, what: str = "STRATOQ_PRIORITY_MODE") -> PriorityMode:
    """'weighted' or 'strict'; `what` names the setting in the error."""
    try:
        return PriorityMode(raw.strip().lower())
    except ValueError:
        raise ConfigError(f"{what} must be weighted or strict, got {raw!r}") from None


def parse_weights(raw: str, what: str = "STRATOQ_PRIORITY_WEIGHTS") -> tuple[int, int, int]:
    """'6,3,1' -> (6, 3, 1): the weights of high, default and low, each 1 to 1000."""
    parts = [p.strip() for p in raw.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(1 <= v <= MAX_WEIGHT for v in values):
        raise ConfigError(
            f"{what} must be three whole numbers from 1 to 1000 (the weights of high, "
            f"default and low), like 6,3,1; got {raw!r}"
        )
    return values[0], values[1], values[2]


def weighted_order(keys: Sequence[str], weights: Sequence[float], rng: random.Random) -> list[str]:
    """A random order of `keys` where each position is drawn in proportion to the weights
    of the keys not yet drawn (sampling without replacement).

    The first key is the queue to receive from; the rest are where to look next if it
    turns out empty, so an empty queue hands its share to the others in proportion.
    """
    pool = list(zip(keys, weights, strict=True))
    order: list[str] = []
    while len(pool) > 1:
        total = sum(w for _, w in pool)
        x = rng.random() * total
        for i, (key, w) in enumerate(pool):
            x -= w
            if x < 0 or i == len(pool) - 1:
                order.append(key)
                del pool[i]
                break
    return order + [key for key, _ in pool]


class PriorityChooser:
    """Orders a poller's queues for its next receive.

    `keys` are STRATOQ_QUEUES keys (several logical queues may be mixed). Strict: by
    priority, logical queues of the same priority taking turns. Weighted: each key
    weighs its priority's weight (`weighted_order`).
    """

    def __init__(
        self,
        keys: Sequence[str],
        mode: PriorityMode = PriorityMode.WEIGHTED,
        weights: Sequence[int] = DEFAULT_WEIGHTS,
        rng: random.Random | None = None,
    ) -> None:
        if not keys:
            raise ValueError("a chooser needs at least one queue")
        self.keys = list(keys)
        self.mode = mode
        by_priority = dict(zip(PRIORITIES, weights, strict=True))
        self._weights = [by_priority[split_key(k)[1]] for k in self.keys]
        self._rng = rng or random.Random()
        self._turn = 0

    def order(self) -> list[str]:
        """Every key once, the one to try first at the front."""
        if self.mode is PriorityMode.WEIGHTED:
            return weighted_order(self.keys, self._weights, self._rng)
        self._turn += 1
        out: list[str] = []
        for priority in PRIORITIES:
            tier = [k for k in self.keys if split_key(k)[1] == priority]
            if tier:
                # Same priority, several logical queues: rotate so none starves another.
                shift = self._turn % len(tier)
                out += tier[shift:] + tier[:shift]
        return out


def idle_counts(keys: Sequence[str], want: int, free: int) -> dict[str, int]:
    """How many messages an idle poller's long poll on each key asks for.

    All of a poller's queues are long-polled at once when all were found empty, so
    several may answer together. Only the highest priority present may bring `want`
    (prefetch included); a lower one brings at most `free`, what idle slots start now,
    so a batch of low tasks is never held as prefetch ahead of high ones arriving next.
    """
    if not keys:
        return {}
    top = min(PRIORITIES.index(split_key(k)[1]) for k in keys)
    return {k: want if PRIORITIES.index(split_key(k)[1]) == top else min(want, free) for k in keys}
