"""Concurrency and rate limits at the worker, before the claim (`FlowControl.admit`).

A message whose task has limits (its own, carried in the message, or the operator's on
its queue or name, read through a cache) gets a token of each rate limit, then a slot of
each concurrency limit, and only then is its task claimed. A task that must wait is
handed back unclaimed (`HandBack`): no attempt spent, its status unchanged, and the task
item's `waiting_for` says why. A token that is not there yet is promised to the task
(`stratoq.core.limits.take`), so it comes back once, less than a second before its
token (SQS delays are whole seconds, rounded down), and the worker sleeps out the
rest before it takes any slot or claim (`stratoq.core.policy.token_wait`): the task
starts at its token. Too late, and it takes a new one. A task with no free slot comes
back after a growing, jittered delay. Slots are held until the attempt ends
(`release`), renewed with the lease (`LeaseKeeper`), and free themselves when a crashed
worker's hold ends.

A task without limits, on a queue and name without any, costs no request here.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from stratoq.adapters.limits import BucketStore, LimitStore, Slot, SlotStore, WaitMarks
from stratoq.adapters.transport import Delivery, TaskMessage
from stratoq.core.limits import (
    NO_LIMITS,
    LimitsState,
    TaskLimits,
    TtlCache,
    late,
    plan,
)
from stratoq.core.policy import HandBackFor, WaitReason, token_wait
from stratoq.core.priority import split_key
from stratoq.services.handback import Action, Disposition, HandBack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

NO_TASK_LIMITS = TaskLimits()
# A message given back unclaimed at once, as it came (a stopping worker's).
GIVEN_BACK = Disposition(Action.RELEASE, delay=0, status="released")


@dataclass(frozen=True)
class Admitted:
    """The message may be claimed; its task holds `slots` (release them at the end)."""

    msg: TaskMessage
    slots: tuple[Slot, ...] = ()


class FlowControl:
    """The limits a worker checks: slots, buckets, the operator's limits (cached)."""

    def __init__(
        self,
        slots: SlotStore,
        buckets: BucketStore,
        limits: TtlCache[LimitsState],
        marks: WaitMarks,
        back: HandBack,
        rng: random.Random,
    ) -> None:
        self.slots = slots
        self.buckets = buckets
        self.limits = limits
        self.marks = marks
        self.back = back
        self._rng = rng

    @classmethod
    def over(
        cls,
        db: DynamoDBClient,
        table: str,
        back: HandBack,
        limits: TtlCache[LimitsState] | None,
        ttl_ms: int,
    ) -> FlowControl:
        """Flow control over the tasks table; `limits` the operator's limits (None: a
        cache of its own, read at most every `ttl_ms`)."""
        cache = limits or TtlCache(LimitStore(db, table).read, NO_LIMITS, ttl_ms)
        stores = SlotStore(db, table), BucketStore(db, table)
        return cls(*stores, cache, WaitMarks(db, table), back, random.Random())

    def admit(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        now: int,
        lease_ms: int,
        stopping: threading.Event | None = None,
    ) -> Admitted | Disposition:
        """Admitted (holding its slots) or handed back to wait (a Disposition).
        `stopping`, the calling worker's, set when it takes no more tasks, ends a sleep
        towards a rate-limit token early (the message then goes back as it came)."""
        try:
            return self._admit(delivery, msg, now, lease_ms, stopping or threading.Event())
        except Exception:
            # Not the task's fault (DynamoDB throttled or unreachable): the message comes
            # back in a second, unclaimed. A slot taken before the error frees itself
            # when its hold ends.
            logger.exception("checking the task's limits failed", extra={"task_id": msg.task_id})
            return Disposition(Action.RELEASE, delay=1, status="limits_unavailable")

    def _admit(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        now: int,
        lease_ms: int,
        stopping: threading.Event,
    ) -> Admitted | Disposition:
        queue = self.back.queue_of(delivery)
        todo = plan(
            msg.tenant,
            msg.name,
            split_key(queue)[0],
            msg.limits or NO_TASK_LIMITS,
            self.limits.get(),
        )
        if todo.empty:
            return Admitted(msg)
        if todo.buckets:
            if msg.rate_paid_ms is None or late(msg.rate_paid_ms, now):
                waits = [self.buckets.reserve(scope, rate, now) for scope, rate in todo.buckets]
                if any(w is None for w in waits):
                    return self._wait(delivery, msg, WaitReason.RATE_LIMITED, now)
                msg = replace(msg, rate_paid_ms=now + max(w or 0 for w in waits))
            due = msg.rate_paid_ms or now
            wait = token_wait(due, now)
            if isinstance(wait, HandBackFor):
                # Its token is more than a second away (taken now, or a long wait's hop).
                return self._rate_wait(delivery, msg, due, now)
            if wait.ms:
                # Less than a second before its token (SQS delays are whole seconds,
                # rounded down towards a token): sleep it out here, before any slot or
                # claim is held, so the task starts at its token and not in a bunch.
                if stopping.wait(wait.ms / 1000):
                    # The worker is stopping: the message goes back as it is, its token
                    # in it, for another worker to start at that time.
                    return GIVEN_BACK
                now = due
        held: list[Slot] = []
        # One holder name for the slots of this attempt: the task and a nonce, so a
        # duplicate delivery of the same task never mistakes another's slot for its own.
        holder = f"{msg.task_id}/{secrets.token_hex(4)}"
        for scope, limit in todo.slots:
            slot = self.slots.acquire(scope, limit, holder, now + lease_ms, now, self._rng)
            if slot is None:
                self.release(held)
                return self._wait(delivery, msg, WaitReason.CONCURRENCY, now)
            held.append(slot)
        return Admitted(msg, tuple(held))

    def _rate_wait(self, delivery: Delivery, msg: TaskMessage, due: int, now: int) -> Disposition:
        """Hand a task back until its promised token is its own."""
        self.back.metrics.task_handed_back(
            self.back.queue_of(delivery), msg.name or "", WaitReason.RATE_LIMITED.value
        )
        self._mark(msg, WaitReason.RATE_LIMITED)
        logger.info(
            "rate limited; handed back until its token",
            extra={"task_id": msg.task_id, "task_name": msg.name, "retry_in_ms": due - now},
        )
        return self.back.hop(delivery, msg, due, now, status=WaitReason.RATE_LIMITED.value)

    def _wait(self, delivery: Delivery, msg: TaskMessage, why: WaitReason, now: int) -> Disposition:
        if msg.waiting_since_ms is None:
            self._mark(msg, why)  # the first hand-back of this wait: show it on the task
        return self.back.wait(delivery, msg, msg.name, why, now)

    def _mark(self, msg: TaskMessage, why: WaitReason) -> None:
        try:
            self.marks.mark(msg.task_id, msg.tenant, why.value)
        except Exception:
            # Only what GET shows: the wait itself goes on.
            logger.exception("marking a task as waiting failed", extra={"task_id": msg.task_id})

    def release(self, slots: Sequence[Slot]) -> None:
        """Free the slots (at the end of the attempt, or of an admission that failed)."""
        for slot in slots:
            try:
                self.slots.release(slot)
            except Exception:
                # It frees itself when its hold ends (at most a lease from now).
                logger.exception("releasing a concurrency slot failed", extra={"slot": slot})
