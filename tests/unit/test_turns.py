"""A poller's prefetch buffer takes tenants in turns (runtime/turns.py)."""

from __future__ import annotations

import heapq
import json

from stratoq.runtime.turns import Turns, tenant_of


def _drain(buffer: list[tuple[int, int, str]], turns: Turns) -> list[str]:
    order = []
    while buffer:
        tag, _, name = heapq.heappop(buffer)
        turns.started(tag)
        order.append(name)
    return order


def test_a_quiet_tenants_message_is_not_held_up_by_a_buffered_flood() -> None:
    turns, buffer = Turns(), []
    for i in range(10):
        heapq.heappush(buffer, (turns.tag("flood"), i, f"flood-{i}"))
    heapq.heappush(buffer, (turns.tag("quiet"), 10, "quiet-0"))
    order = _drain(buffer, turns)
    assert order.index("quiet-0") <= 1
    # The flood's own messages keep their arrival order.
    assert [n for n in order if n.startswith("flood")] == [f"flood-{i}" for i in range(10)]


def test_a_tenant_arriving_later_waits_behind_only_whats_started() -> None:
    turns, buffer = Turns(), []
    for i in range(4):
        heapq.heappush(buffer, (turns.tag("a"), i, f"a-{i}"))
    tag, _, _ = heapq.heappop(buffer)  # a slot starts a-0
    turns.started(tag)
    heapq.heappush(buffer, (turns.tag("b"), 4, "b-0"))
    heapq.heappush(buffer, (turns.tag("b"), 5, "b-1"))
    assert _drain(buffer, turns) == ["a-1", "b-0", "a-2", "b-1", "a-3"]


def test_the_tenant_is_read_from_the_message_body() -> None:
    assert tenant_of(json.dumps({"id": "x", "t": "acme"})) == "acme"
    assert tenant_of(json.dumps({"id": "x"})) == "default"
    assert tenant_of("not json") == ""
    assert tenant_of("[1]") == ""
