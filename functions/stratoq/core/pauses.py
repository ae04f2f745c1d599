"""Paused queues and task names, and the short-lived cache workers read them through.

A pause is global and an operator's act: a queue is shared by every tenant, and so is a
task name (its handler is the deployment's code), so only the operator tenant's admin
keys pause or resume (`stratoq.api.pauses`); the state is one item of the tasks table
(`stratoq.adapters.pauses`).

Workers never read that item per message: `PauseCache` keeps what it read for `ttl_ms`
and reads again after, so a worker may start a task of a queue up to `ttl_ms` after the
queue was paused, and a resumed queue's tasks are handed back for up to `ttl_ms` more
(plus their hand-back delay, `policy.paused_delay`). Pure: the reader and the clock are
passed in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from stratoq.core.clock import now_ms
from stratoq.core.priority import split_key

logger = logging.getLogger(__name__)

# Workers' default for STRATOQ_PAUSE_CACHE_SECONDS.
DEFAULT_TTL_SECONDS = 5


@dataclass(frozen=True)
class PauseState:
    """The logical queues and task names paused right now."""

    queues: frozenset[str] = field(default_factory=frozenset)
    task_names: frozenset[str] = field(default_factory=frozenset)

    def holds(self, queue_key: str, task_name: str | None) -> str | None:
        """Why a message of `queue_key` (a STRATOQ_QUEUES key: `default`, `default:high`)
        and `task_name` must not run: "queue" or "task_name"; None: it may."""
        if split_key(queue_key)[0] in self.queues:
            return "queue"
        if task_name is not None and task_name in self.task_names:
            return "task_name"
        return None

    @property
    def any(self) -> bool:
        """Whether anything is paused (else no message needs a second look)."""
        return bool(self.queues or self.task_names)


NOTHING_PAUSED = PauseState()


class PauseCache:
    """`state()`: the pause state, read through `read` at most once per `ttl_ms`.

    A failed read keeps the last state known (nothing paused before the first success)
    and is tried again a TTL later: a DynamoDB hiccup neither stops every queue nor
    floods the table with reads, and the claim that follows fails on its own anyway.
    Thread-safe: a poller's slots share one cache; one of them reads, the others wait.
    """

    def __init__(
        self,
        read: Callable[[], PauseState],
        ttl_ms: int = DEFAULT_TTL_SECONDS * 1000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._read = read
        self.ttl_ms = max(0, ttl_ms)
        self._clock = clock
        self._state = NOTHING_PAUSED
        self._read_at: int | None = None
        self._lock = threading.Lock()

    def state(self) -> PauseState:
        """The state as of at most `ttl_ms` ago (or the last one known, if reads fail)."""
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self.ttl_ms:
                return self._state
            try:
                self._state = self._read()
            except Exception:
                logger.warning("reading the pause state failed; using the last one known")
            self._read_at = now
            return self._state
