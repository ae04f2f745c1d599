"""The composition root builds each shared service once per process and hands it down."""

from __future__ import annotations

from stratoq.core.settings import Settings
from stratoq.services.app import Services
from stratoq.services.runner import InlineRunner


def test_workers_of_one_process_share_the_roots_services() -> None:
    services = Services(Settings(region="us-east-1", allow_unencrypted=True))
    first, second = services.worker(InlineRunner()), services.worker(InlineRunner())
    assert first is not second
    for name in ("store", "transport", "locks", "progress", "pauses", "events", "flow", "back"):
        assert getattr(first, name) is getattr(second, name), name
    # The limits the workers check are the root's: one operator-limits cache, one slot
    # store, one hand-back (its metrics are the process's).
    assert first.flow is services.flow and first.back is services.hand_back
    assert first.flow.limits is services.limits and first.flow.slots is services.slots
    assert first.flow.back is services.hand_back
    assert services.hand_back.metrics is services.metrics is first.metrics
