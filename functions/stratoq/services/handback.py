"""Messages sent back to their queue without running their task: a hop towards the due
time of a delayed task, a hand-back of a name this worker has no handler for (another
fleet may have one), a wait while the queue or name is paused. Each re-sends the message
(a fresh one: waiting never reaches the DLQ's receive limit) and acknowledges the old;
none claims the task or spends an attempt. Also what `Worker.process` answers for every
message, a `Disposition`: what the loop around it (Lambda batch or poller) does with it."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from enum import StrEnum

from stratoq.adapters.transport import Delivery, SqsTransport, TaskMessage, outgoing_for
from stratoq.core.policy import WaitReason, unknown_task_delay, wait_delay
from stratoq.observability.metrics import Metrics

logger = logging.getLogger(__name__)


class Action(StrEnum):
    ACK = "ack"  # delete the message: the task is recorded (or the message is obsolete)
    RELEASE = "release"  # make it visible again after `delay` seconds
    LEAVE = "leave"  # touch nothing: our lease is gone, the message reappears by itself


@dataclass(frozen=True)
class Disposition:
    """What to do with a processed message, and why (`status`)."""

    action: Action
    delay: int = 0
    status: str = ""  # what happened, for logs and metrics


ACK_OBSOLETE = Disposition(Action.ACK, status="duplicate")


class HandBack:
    """Re-sends for a worker: its transport, metrics, randomness and the grace period of
    unknown names."""

    def __init__(
        self,
        transport: SqsTransport,
        metrics: Metrics,
        rng: random.Random,
        unknown_task_grace_seconds: int,
    ) -> None:
        self.transport = transport
        self.metrics = metrics
        self._rng = rng
        self._unknown_grace_s = unknown_task_grace_seconds

    def hop(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        due_ms: int | None,
        now: int,
        status: str = "hop",
    ) -> Disposition:
        out = outgoing_for(self.queue_of(delivery), msg, due_ms, now)
        try:
            self.transport.send([out])
        except Exception:
            logger.exception("re-delaying a message failed", extra={"task_id": msg.task_id})
            return Disposition(Action.RELEASE, delay=out.delay_seconds, status=status)
        return Disposition(Action.ACK, status=status)

    def unknown(
        self, delivery: Delivery, msg: TaskMessage, name: str, now: int
    ) -> Disposition | None:
        """Offer a task this worker has no handler for to the others on its queue (another
        fleet, or the new version in a rolling deploy), unclaimed: no attempt is spent.
        None: its grace period is over, so the caller claims it and fails it."""
        first = msg.unknown_since_ms if msg.unknown_since_ms is not None else now
        grace_ms = self._unknown_grace_s * 1000
        delay = unknown_task_delay(first, now, grace_ms, self._rng)
        queue = self.queue_of(delivery)
        if delay is None:
            self.metrics.task_unknown(queue, name, "failed")
            logger.warning(
                "no worker took the task in its grace period; failing it as unknown_task",
                extra={"task_id": msg.task_id, "task_name": name, "grace_s": grace_ms // 1000},
            )
            return None
        self.metrics.task_unknown(queue, name, "handed_back")
        logger.info(
            "no handler for the task's name; handed back for another worker",
            extra={"task_id": msg.task_id, "task_name": name, "retry_in_s": delay},
        )
        back = replace(msg, name=name, unknown_since_ms=first)
        return self.hop(delivery, back, now + delay * 1000, now, status="handed_back")

    def wait(
        self, delivery: Delivery, msg: TaskMessage, name: str | None, why: WaitReason, now: int
    ) -> Disposition:
        """Hand the task back unclaimed and unspent to wait for `why` to pass (its queue
        or task name paused): no attempt counted, status unchanged, a fresh message
        (so waiting never reaches the DLQ's receive limit) that comes back after a delay
        growing with the wait so far. Delayed tasks reach this only once due."""
        since = msg.waiting_since_ms if msg.waiting_since_ms is not None else now
        delay = wait_delay(why, since, now, self._rng)
        queue = self.queue_of(delivery)
        self.metrics.task_handed_back(queue, name or "", why.value)
        logger.info(
            "task handed back to wait",
            extra={"task_id": msg.task_id, "task_name": name, "reason": why, "retry_in_s": delay},
        )
        back = replace(msg, name=name, waiting_since_ms=since)
        return self.hop(delivery, back, now + delay * 1000, now, status=why.value)

    def queue_of(self, delivery: Delivery) -> str:
        """The key of the queue a delivery came from: hops and retries go back to the
        same (priority) queue, so a task keeps its priority for its whole life."""
        for key in self.transport.keys:
            if self.transport.url(key) == delivery.queue_url:
                return key
        return "default"
