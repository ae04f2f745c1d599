"""Age of the oldest message of a queue on the embedded moto server, read in-process.

SQS has no queue attribute for it (on AWS it is CloudWatch's
ApproximateAgeOfOldestMessage metric), and peeking with ReceiveMessage would raise the
messages' receive counts towards the dead-letter redrive. The dev stack runs moto in its
own process, so it reads moto's queue directly: the oldest message that is receivable,
waiting or in flight (as CloudWatch counts it), measured from when it became receivable
(sent, plus its delay). Delayed messages do not count until they are due.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def moto_oldest_age(region: str) -> Callable[[str, str], float | None]:
    """`oldest(queue, url)`: seconds, 0.0 for an empty queue, None if moto has no such queue."""

    def oldest(queue: str, url: str) -> float | None:
        from moto.sqs.models import sqs_backends

        account, name = url.rstrip("/").split("/")[-2:]
        found = sqs_backends[account][region].queues.get(name)
        if found is None:
            return None
        now_ms = time.time() * 1000
        ready = [
            max(float(m.sent_timestamp or 0), float(m.delayed_until or 0))
            for m in list(found._messages)
        ]
        due = [r for r in ready if r <= now_ms]
        return (now_ms - min(due)) / 1000 if due else 0.0

    return oldest
