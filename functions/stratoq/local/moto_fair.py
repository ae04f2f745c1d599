"""Fair receives on the emulator's standard queues, as SQS fair queues hand messages out.

SQS makes a standard queue fair when its messages carry a MessageGroupId (the tenant):
when one tenant holds a disproportionate share of the messages in flight, a receive
returns the other tenants' messages first (docs/flow-control.md, "Tenant fairness").
moto 5 stores a standard queue's MessageGroupId but ignores it: a receive hands out the
oldest visible messages, so a quiet tenant's task waits behind a flood's whole backlog.

The rule here: among a queue's visible messages, a receive takes next from the group
with the fewest messages in flight (those it has handed out in this receive counted),
ties going to the group whose next message is oldest; within a group, arrival order. A
message without a group is a tenant of its own (none in flight), as in SQS. It is the
spirit of SQS's rule without its thresholds (a tenant becomes "noisy" there only past a
share of the in-flight messages or of the processing time), so the emulator is fair
from the first message on: a stricter test of a consumer than SQS is.

Cost: one pass over the queue's messages per receive, and only on a queue that has ever
been sent a message with a group; a queue without groups keeps the lazy receive of
stratoq.local.moto_patches (`_Visible`), which stops at the count it wants.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from typing import Any

# Set on a moto Queue once a message with a MessageGroupId is added to it (standard
# queues only): from then on its receives are fair.
GROUPED = "_stratoq_grouped"


def install(models: Any) -> None:
    """Mark standard queues that are sent grouped messages (see `fair_messages`)."""
    original_add = models.Queue.add_message

    def add_message(self: Any, message: Any) -> None:
        if message.group_id is not None and not self.fifo_queue:
            self.__dict__[GROUPED] = True
        original_add(self, message)

    models.Queue.add_message = add_message


def is_grouped(queue: Any) -> bool:
    """Whether a queue's receives go by `fair_messages`."""
    return bool(queue.__dict__.get(GROUPED, False))


class FairVisible:
    """A grouped standard queue's visible messages, in the order a fair receive takes them.

    moto's receive iterates these until it has its count; `bool` (its wait for messages)
    stays lazy. The list is copied when read, as moto's is.
    """

    def __init__(self, messages: list[Any]) -> None:
        self._messages = list(messages)

    def __iter__(self) -> Iterator[Any]:
        return fair_order(self._messages, time.time() * 1000.0)

    def __bool__(self) -> bool:
        now = time.time() * 1000.0
        return any(_visible(m, now) for m in self._messages)

    def __len__(self) -> int:
        now = time.time() * 1000.0
        return sum(1 for m in self._messages if _visible(m, now))


def _visible(message: Any, now_ms: float) -> bool:
    # moto's Message.visible and not Message.delayed, against one clock reading.
    return bool(now_ms > message.visible_at and now_ms >= message.delayed_until)


def fair_order(messages: list[Any], now_ms: float) -> Iterator[Any]:
    """The visible messages, fewest-in-flight group first, round-robin, oldest first
    within a group (see the module's docstring)."""
    in_flight: dict[Any, int] = {}
    # group -> its visible messages as (position in the queue's list: send order, message)
    lanes: dict[Any, list[tuple[int, Any]]] = {}
    for i, m in enumerate(messages):
        group = m.group_id
        if now_ms <= m.visible_at:  # handed out and not yet back: in flight
            if group is not None:
                in_flight[group] = in_flight.get(group, 0) + 1
        elif now_ms >= m.delayed_until:
            lanes.setdefault(group, []).append((i, m))
    # (messages in flight, position of the lane's next message, group). The ungrouped
    # messages (group None) are one lane that never counts any in flight: each of them
    # is a tenant of its own, so they go in send order among the groups with none.
    heap = [(in_flight.get(g, 0), lane[0][0], g) for g, lane in lanes.items()]
    heapq.heapify(heap)
    taken: dict[Any, int] = {}
    while heap:
        load, _, group = heapq.heappop(heap)
        lane = lanes[group]
        k = taken.get(group, 0)
        yield lane[k][1]
        taken[group] = k + 1
        if k + 1 < len(lane):
            heapq.heappush(heap, (load if group is None else load + 1, lane[k + 1][0], group))
