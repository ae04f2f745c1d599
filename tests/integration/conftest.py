"""Fixtures shared by the integration tests (the emulator's are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from stratoq.local.faults import fault_state, set_faults

Inject = Callable[[str], None]

# The fault kinds a write must survive: an answer lost after the write was applied,
# throttling, a 503, and the connection reset before an answer.
KINDS = ["lost", "throttle", "503", "reset"]


@pytest.fixture
def inject(emulator: str) -> Iterator[Inject]:
    """Switch a fault spec on (local/faults.py), replacing the one before. The test fails
    unless every rule of every spec it switched on was injected at least once, so a
    fault that never reached its write cannot pass for one that was survived."""
    specs: list[str] = []

    def check() -> None:
        injected = [r["injected"] for r in fault_state(emulator)["rules"]]
        assert injected and all(n >= 1 for n in injected), (specs[-1], injected)

    def on(spec: str) -> None:
        if specs:
            check()
        specs.append(spec)
        set_faults(emulator, spec, seed=1)

    try:
        yield on
        if specs:
            check()
    finally:
        set_faults(emulator, "")


def once(action: str, kind: str, match: str = "") -> str:
    """A spec failing one DynamoDB `action` (whose request contains `match`) once."""
    return f"dynamodb:{action}={kind}:1:times=1" + (f":match={match}" if match else "")
