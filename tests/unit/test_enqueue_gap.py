"""The pure parts of closing the enqueue gap: when a message whose task is not stored
comes back, when it is dropped as an orphan, and the enqueue time it carries."""

from __future__ import annotations

import pytest

from stratoq.adapters.transport import TaskMessage
from stratoq.core.policy import MISSING_REREADS_MS, orphan_delay

GRACE = 300_000


def test_the_pause_doubles_with_the_time_since_the_enqueue() -> None:
    t, delays = 0, []
    while (delay := orphan_delay(0, t, GRACE)) is not None:
        delays.append(delay)
        t += delay * 1000
    assert delays[:6] == [1, 1, 2, 4, 8, 16]
    # About log2(grace) hand-backs in all, and the last one ends exactly at the grace.
    assert len(delays) <= 10 and sum(delays) == GRACE // 1000


@pytest.mark.parametrize("waited", [GRACE, GRACE + 1, 10 * GRACE])
def test_after_the_grace_the_message_is_dropped(waited: int) -> None:
    assert orphan_delay(1_000, 1_000 + waited, GRACE) is None


def test_a_clock_behind_the_enqueuer_still_waits_a_second() -> None:
    assert orphan_delay(5_000, 1_000, GRACE) == 1


def test_the_inline_rereads_stay_within_tens_of_ms() -> None:
    assert sum(MISSING_REREADS_MS) < 100


def test_the_enqueue_time_travels_in_the_message_but_is_not_its_identity() -> None:
    msg = TaskMessage("abc", "default", name="echo", enqueued_ms=1_700_000_000_123)
    assert msg.encode() == '{"id":"abc","t":"default","n":"echo","e":1700000000123}'
    assert TaskMessage.decode(msg.encode()).enqueued_ms == 1_700_000_000_123
    assert msg == TaskMessage("abc", "default", name="echo")
    with pytest.raises(ValueError, match="field e"):
        TaskMessage.decode('{"id":"abc","e":"now"}')
