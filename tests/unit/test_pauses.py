"""Pure parts of pausing: what a pause state holds, the workers' cache of it, and how
long a paused task waits before it is offered again (issue 19, item 4)."""

from __future__ import annotations

import random

import pytest

from stratoq.adapters.transport import TaskMessage
from stratoq.core.pauses import PauseCache, PauseState
from stratoq.core.policy import WAIT_CAPS, WaitReason, unknown_task_delay, wait_delay


def test_a_paused_queue_holds_all_its_priorities_and_a_paused_name_every_queue() -> None:
    state = PauseState(queues=frozenset({"default"}), task_names=frozenset({"bill"}))
    assert state.holds("default", "echo") == "queue"
    assert state.holds("default:high", None) == "queue"
    assert state.holds("emails:low", "bill") == "task_name"
    assert state.holds("emails", "echo") is None
    assert state.holds("emails", None) is None
    assert not PauseState().any and state.any


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


class Reads:
    """The table as the cache sees it: a state to answer, or an error to raise."""

    def __init__(self) -> None:
        self.state = PauseState()
        self.fail = False
        self.count = 0

    def __call__(self) -> PauseState:
        self.count += 1
        if self.fail:
            raise OSError("DynamoDB is unreachable")
        return self.state


def test_the_cache_reads_at_most_once_per_ttl() -> None:
    clock, reads = Clock(), Reads()
    cache = PauseCache(reads, ttl_ms=5000, clock=clock)
    assert cache.state() == PauseState() and reads.count == 1
    reads.state = PauseState(queues=frozenset({"default"}))
    clock.ms += 4999
    assert cache.state() == PauseState() and reads.count == 1  # a pause is seen late...
    clock.ms += 1
    assert cache.state().queues == {"default"} and reads.count == 2  # ...by the TTL at most


def test_a_failed_read_keeps_the_last_state_and_is_tried_a_ttl_later() -> None:
    clock, reads = Clock(), Reads()
    cache = PauseCache(reads, ttl_ms=5000, clock=clock)
    reads.state = PauseState(task_names=frozenset({"bill"}))
    assert cache.state().task_names == {"bill"}
    reads.fail = True
    clock.ms += 5000
    assert cache.state().task_names == {"bill"} and reads.count == 2
    clock.ms += 1000
    assert cache.state().task_names == {"bill"} and reads.count == 2  # no read storm
    reads.fail = False
    reads.state = PauseState()
    clock.ms += 4000
    assert not cache.state().any and reads.count == 3


def test_a_ttl_of_zero_reads_every_time() -> None:
    reads = Reads()
    cache = PauseCache(reads, ttl_ms=0, clock=Clock())
    cache.state()
    cache.state()
    assert reads.count == 2


@pytest.mark.parametrize(
    ("waited_s", "low", "high"),
    [(0, 1, 2), (59, 1, 2), (60, 2, 4), (300, 6, 12), (600, 10, 20), (86_400, 10, 20)],
)
def test_a_paused_task_waits_longer_the_longer_it_is_paused(
    waited_s: int, low: int, high: int
) -> None:
    rng = random.Random(7)
    delays = {wait_delay(WaitReason.PAUSED, 0, waited_s * 1000, rng) for _ in range(200)}
    assert min(delays) == low and max(delays) == high
    # Bounds the time from a resume to work: the cache's TTL plus this.
    assert max(delays) <= 2 * WAIT_CAPS[WaitReason.PAUSED]


def test_the_unknown_name_delay_is_unchanged_by_the_shared_backoff() -> None:
    rng = random.Random(3)
    assert {unknown_task_delay(0, 0, 300_000, rng) for _ in range(100)} == {1, 2}
    assert {unknown_task_delay(0, 3_600_000, 7_200_000, rng) for _ in range(300)} == set(
        range(30, 61)
    )
    assert unknown_task_delay(0, 299_500, 300_000, rng) == 1
    assert unknown_task_delay(0, 300_000, 300_000, rng) is None


def test_the_message_carries_when_the_wait_began() -> None:
    msg = TaskMessage("t1", "acme", name="bill", waiting_since_ms=123)
    assert '"w":123' in msg.encode()
    assert TaskMessage.decode(msg.encode()) == msg
    assert TaskMessage.decode('{"id":"t1","t":"acme"}').waiting_since_ms is None
    with pytest.raises(ValueError, match="field w"):
        TaskMessage.decode('{"id":"t1","w":"soon"}')
