"""Leases of running tasks, kept alive while their handlers run (pollers).

A poller's `LeaseKeeper` renews, every lease/3 seconds, each running task's SQS
visibility and its lease in the store (and its `lock_key` lock and its concurrency
slots with it). A renewal the
store refuses means another worker took the task over: the attempt is stopped.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from stratoq.adapters.limits import Slot, SlotStore
from stratoq.adapters.locks import Acquired, LockStore
from stratoq.adapters.store import TaskStore
from stratoq.adapters.transport import Delivery, SqsTransport
from stratoq.core.clock import now_ms

logger = logging.getLogger(__name__)


@dataclass
class _Lease:
    delivery: Delivery
    task_id: str
    token: str
    lost: threading.Event = field(default_factory=threading.Event)
    lock: Acquired | None = None  # the task's lock_key lock, renewed with the lease
    lock_until_ms: int = 0  # the end of the hold as last confirmed by the store
    lock_lost: bool = False
    slots: tuple[Slot, ...] = ()  # its concurrency slots, renewed with the lease


class LeaseKeeper:
    """Renews the leases of running tasks (SQS visibility and the store's lease).

    Pollers run `beat()` every lease/3 seconds. A renewal the store refuses means
    another worker took the task over: the attempt is stopped and nothing recorded.
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

    def untrack(self, token: str) -> bool:
        """Stop renewing; True if the attempt was stopped because its task lock was lost."""
        with self._lock:
            lease = self._leases.pop(token, None)
        return lease is not None and lease.lock_lost

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
                if not self._store.extend_lease(le.task_id, le.token, until):
                    logger.warning("lease lost to another worker", extra={"task_id": le.task_id})
                    le.lost.set()
                elif le.lock is not None:
                    if self._locks.extend(le.lock, until):
                        le.lock_until_ms = until
                        renewed = True
                    else:
                        # Exclusivity is gone: stop rather than overlap the new holder.
                        logger.warning("task lock lost", extra={"task_id": le.task_id})
                        le.lock_lost = True
                        le.lost.set()
                if not le.lost.is_set() and not self._extend_slots(le, until):
                    # The slot's hold ended and another task took it: stop rather than
                    # run beyond the limit (given back uncounted, as for a lost lock).
                    logger.warning("concurrency slot lost", extra={"task_id": le.task_id})
                    le.lock_lost = True
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
                le.lock_lost = True
                le.lost.set()

    def _extend_slots(self, lease: _Lease, until: int) -> bool:
        """Renew the lease's slots to `until`; False if one of them is not ours any more."""
        return all([self._slots.extend(slot, until) for slot in lease.slots])
