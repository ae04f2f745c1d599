"""A workflow's fan-in under AWS faults (issue 23): a member's count on the callback
node whose answer was lost (applied, then the connection reset) or that was throttled.
botocore retries; the retry meets its own count in `done`, and the completer must still
learn that the node has nothing left to wait for, or the callback would never start."""

from __future__ import annotations

import pytest

from stratoq.core.settings import Settings
from stratoq.core.workflows import chord
from stratoq.services.app import Services
from tests.integration.conftest import KINDS, Inject, once


@pytest.mark.parametrize("kind", KINDS)
def test_the_last_count_of_a_chord_under_a_fault_still_shows_nothing_left(
    settings: Settings, inject: Inject, kind: str
) -> None:
    services = Services(settings)
    wf = services.workflows.submit(chord([("echo", 0), ("echo", 1)], ("gather", None)), "default")
    store = services.workflows.store
    assert store.arrive(wf.id, 2, 0)[0]
    inject(once("UpdateItem", kind))
    _, node = store.arrive(wf.id, 2, 1)
    # Counted exactly once (by the first try, or by the retry): nothing left to wait for.
    assert node["remaining"] == 0 and node["done"] == {0, 1}
    stored = store.node(wf.id, 2)
    assert stored is not None and stored["remaining"] == 0
