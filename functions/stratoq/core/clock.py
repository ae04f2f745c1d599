"""Times as the store keeps them: epoch milliseconds, converted to and from aware datetimes."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def to_ms(dt: datetime | None) -> int | None:
    """Epoch milliseconds of `dt` (None stays None)."""
    return None if dt is None else int(dt.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    """The UTC datetime of epoch milliseconds `ms` (None stays None)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def now_ms() -> int:
    """The wall clock in epoch milliseconds (what leases and locks are compared with)."""
    return int(time.time() * 1000)
