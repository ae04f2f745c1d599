"""Leases of running tasks, kept alive while their handlers run (pollers), and how a
running attempt learns that its task was cancelled.

A poller's `LeaseKeeper` renews, every `policy.heartbeat_seconds(lease)`, each running
task's SQS visibility and its lease in the store (and its `lock_key` lock and its
concurrency slots with it). A renewal the store refuses means another worker took the
task over: the attempt is stopped. A renewal refused because a user cancelled the task
stops the attempt too, and the worker records the task `cancelled` (`Stop.CANCELLED`).

An attempt without a heartbeat (inline, on Lambda: its lease covers the invocation)
has a `CancelWatch` instead, which reads the task every CANCEL_CHECK_SECONDS.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType

from stratoq.adapters.limits import Slot, SlotStore
from stratoq.adapters.locks import Acquired, LockStore
from stratoq.adapters.store import Renewal, TaskStore
from stratoq.adapters.transport import Delivery, SqsTransport
from stratoq.core.clock import now_ms
from stratoq.core.policy import CANCEL_CHECK_SECONDS

logger = logging.getLogger(__name__)


class Stop(Enum):
    """Why the heartbeat stopped an attempt (besides the lease lost to another worker)."""

    NONE = "none"
    LOCK_LOST = "lock_lost"  # its task lock was lost; the lease is still ours
    CANCELLED = "cancelled"  # a user cancelled the task; the lease is still ours


@dataclass
class _Lease:
    delivery: Delivery
    task_id: str
    token: str
    lost: threading.Event = field(default_factory=threading.Event)
    lock: Acquired | None = None  # the task's lock_key lock, renewed with the lease
    lock_until_ms: int = 0  # the end of the hold as last confirmed by the store
    stop: Stop = Stop.NONE
    slots: tuple[Slot, ...] = ()  # its concurrency slots, renewed with the lease


class LeaseKeeper:
    """Renews the leases of running tasks (SQS visibility and the store's lease).

    Pollers run `beat()` every `policy.heartbeat_seconds(lease)` (lease/3, at most 5 s).
    A renewal the store refuses means another worker took the task over: the attempt
    is stopped and nothing recorded (or, refused for a cancel, `Stop.CANCELLED`).
    A task's `lock_key` lock is renewed to the same end as its lease; a refused lock
    renewal (the hold ended and another task took the lock) stops the attempt too.
    """

    def __init__(
        self,
        store: TaskStore,
        transport: SqsTransport,
        lease_seconds: int,
        locks: LockStore | None = None,
        slots: SlotStore | None = None,
    ) -> None:
        self._store = store
        self._transport = transport
        self._locks = locks or LockStore(store.client, store.table)
        self._slots = slots or SlotStore(store.client, store.table)
        self.lease_seconds = lease_seconds
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()

    def track(
        self,
        delivery: Delivery,
        task_id: str,
        token: str,
        lock: Acquired | None = None,
        slots: tuple[Slot, ...] = (),
    ) -> threading.Event:
        lease = _Lease(delivery, task_id, token, lock=lock, slots=slots)
        if lock is not None:
            lease.lock_until_ms = lock.until_ms
        with self._lock:
            self._leases[token] = lease
        return lease.lost

    def untrack(self, token: str) -> Stop:
        """Stop renewing; why the heartbeat stopped the attempt, if it did."""
        with self._lock:
            lease = self._leases.pop(token, None)
        return Stop.NONE if lease is None else lease.stop

    def abort_all(self) -> None:
        """Stop every running attempt (shutdown after the grace period)."""
        with self._lock:
            for lease in self._leases.values():
                lease.lost.set()

    def beat(self) -> None:
        with self._lock:
            leases = list(self._leases.values())
        if not leases:
            return
        until = now_ms() + self.lease_seconds * 1000
        try:
            self._transport.change_visibility((le.delivery, self.lease_seconds) for le in leases)
        except Exception:
            logger.exception("lease heartbeat: extending SQS visibility failed")
        for le in leases:
            renewed = False
            try:
                renewal = self._store.extend_lease(le.task_id, le.token, until)
                if renewal is Renewal.CANCEL_REQUESTED:
                    logger.info("task cancelled; stopping it", extra={"task_id": le.task_id})
                    le.stop = Stop.CANCELLED
                    le.lost.set()
                elif renewal is Renewal.LOST:
                    logger.warning("lease lost to another worker", extra={"task_id": le.task_id})
                    le.lost.set()
                elif le.lock is not None:
                    if self._locks.extend(le.lock, until):
                        le.lock_until_ms = until
                        renewed = True
                    else:
                        # Exclusivity is gone: stop rather than overlap the new holder.
                        logger.warning("task lock lost", extra={"task_id": le.task_id})
                        le.stop = Stop.LOCK_LOST
                        le.lost.set()
                if not le.lost.is_set() and not self._extend_slots(le, until):
                    # The slot's hold ended and another task took it: stop rather than
                    # run beyond the limit (given back uncounted, as for a lost lock).
                    logger.warning("concurrency slot lost", extra={"task_id": le.task_id})
                    le.stop = Stop.LOCK_LOST
                    le.lost.set()
            except Exception:
                logger.exception("lease heartbeat failed", extra={"task_id": le.task_id})
            # The renewal failed (throttling, network): stop before the hold can end under
            # the running task, not after another task has taken the lock. A renewal that
            # succeeded holds the lock for a whole lease from this beat.
            margin = self.lease_seconds * 1000 // 3
            if (
                le.lock is not None
                and not renewed
                and not le.lost.is_set()
                and now_ms() + margin >= le.lock_until_ms
            ):
                logger.warning("task lock could not be renewed", extra={"task_id": le.task_id})
                le.stop = Stop.LOCK_LOST
                le.lost.set()

    def _extend_slots(self, lease: _Lease, until: int) -> bool:
        """Renew the lease's slots to `until`; False if one of them is not ours any more."""
        return all([self._slots.extend(slot, until) for slot in lease.slots])


class CancelWatch:
    """Watches an attempt that has no heartbeat (inline, Lambda) for a cancel request.

    Every `interval` seconds it reads the task (`TaskStore.cancel_requested`). The
    first check that finds a request sets `requested` (the handler's
    `stratoq.context().cancelled`); the next one sets `stop`, the runner's signal to
    stop waiting for the handler: a handler that checks the flag gets one interval to
    return. Use it as a context manager around the attempt.
    """

    def __init__(
        self, store: TaskStore, task_id: str, token: str, interval: float = CANCEL_CHECK_SECONDS
    ) -> None:
        self._store = store
        self._task_id = task_id
        self._token = token
        self._interval = interval
        self.requested = threading.Event()
        self.stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stratoq-cancel", daemon=True)

    def __enter__(self) -> CancelWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Not joined: a read in flight ends by itself and its answer is ignored.
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(self._interval):
            if self.requested.is_set():
                self.stop.set()
                return
            try:
                if self._store.cancel_requested(self._task_id, self._token):
                    logger.info("task cancelled; telling its handler", extra=self._log())
                    self.requested.set()
            except Exception:
                logger.exception("checking for a cancel failed", extra=self._log())

    def _log(self) -> dict[str, object]:
        return {"task_id": self._task_id}
