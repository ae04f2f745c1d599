"""A task's `lock_key` lock around its attempt: taken after the claim, held with the
lease, released at the end. A task whose lock another holds waits unspent."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from stratoq.adapters.locks import Acquired, LockStore
from stratoq.adapters.store import Claimed, TaskStore
from stratoq.adapters.transport import Delivery, TaskMessage
from stratoq.core.policy import locked_delay
from stratoq.services.handback import Action, Disposition, HandBack

logger = logging.getLogger(__name__)


class TaskLocks:
    """Takes and releases the `lock_key` locks of a `Worker`'s claimed tasks."""

    def __init__(
        self,
        store: TaskStore,
        locks: LockStore,
        back: HandBack,
        rng: random.Random,
        clock: Callable[[], int],
    ) -> None:
        self.store = store
        self.locks = locks
        self.back = back
        self._rng = rng
        self._clock = clock

    def take(
        self, delivery: Delivery, msg: TaskMessage, claim: Claimed, log: dict[str, object]
    ) -> Acquired | Disposition:
        """The claimed task's lock, or the Disposition of its message if it must wait."""
        task = claim.task
        assert task.lock_key is not None
        now = self._clock()
        # The hold ends with the lease and is renewed with it, so a crashed worker's
        # lock frees when its task becomes claimable again (Lambda: the lease is the
        # invocation's remaining time plus a grace period, so the hold is too).
        try:
            got = self.locks.acquire(
                task.tenant, task.lock_key, f"task {task.id}", claim.lease_expires_ms - now, now
            )
        except Exception:
            # Not the task's fault: give it back uncounted rather than let the lease
            # lapse into a lost attempt.
            logger.exception("taking the task lock failed; giving the task back", extra=log)
            self.store.unclaim(claim)
            return Disposition(Action.RELEASE, delay=1, status="locked")
        if not isinstance(got, Acquired):
            return self._wait(delivery, msg, claim, got.until_ms, now, log)
        return got

    def _wait(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        claim: Claimed,
        holder_until_ms: int,
        now: int,
        log: dict[str, object],
    ) -> Disposition:
        """Another task holds the lock: give the claim back and come back later.

        Waiting for a lock is not a failure, so the claim is undone (attempts, status
        and errors as before). The message is re-sent with a delay rather than made
        invisible: a fresh message restarts SQS's receive count, so tasks queuing for a
        busy lock never reach the redrive limit and the DLQ.
        """
        if not self.store.unclaim(claim):
            logger.warning("lease lost before the claim could be undone", extra=log)
            return Disposition(Action.LEAVE, status="lost")
        delay = locked_delay(holder_until_ms, now, self._rng)
        logger.info("task lock is held; re-delayed", extra={**log, "retry_in_s": delay})
        return self.back.hop(delivery, msg, now + delay * 1000, now, status="locked")

    def release(self, held: Acquired, log: dict[str, object]) -> None:
        try:
            # Refused only if the hold ended and another task took the lock: nothing to do.
            self.locks.release(held, self._clock())
        except Exception:
            logger.exception("releasing the task lock failed; it frees with the lease", extra=log)
