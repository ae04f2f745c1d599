"""Times as the store keeps them (epoch milliseconds, converted to and from aware
datetimes) and as the HTTP API shows them (`Timestamp`: RFC 3339, milliseconds, `Z`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, PlainSerializer, WithJsonSchema


def to_ms(dt: datetime | None) -> int | None:
    """Epoch milliseconds of `dt` (None stays None)."""
    return None if dt is None else int(dt.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    """The UTC datetime of epoch milliseconds `ms` (None stays None)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def now_ms() -> int:
    """The wall clock in epoch milliseconds (what leases and locks are compared with)."""
    return int(time.time() * 1000)


def rfc3339_ms(dt: datetime) -> str:
    """`dt` in UTC as RFC 3339 with milliseconds and `Z`: 2026-12-03T12:00:00.123Z.

    Milliseconds are cut, not rounded: the store keeps epoch milliseconds (`to_ms`), so a
    time shows the same before it is stored (a 202 answer) and after (a later GET). A
    naive datetime counts as UTC.
    """
    utc = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


# Every time the HTTP API shows is one of these (contract models and the core's models
# they re-export), so one precision holds everywhere. In Python (`model_dump()`) it stays
# a datetime; the JSON schema still says date-time. Input accepts any RFC 3339 time.
_AS_JSON = PlainSerializer(rfc3339_ms, return_type=str, when_used="json")
_SCHEMA = WithJsonSchema({"type": "string", "format": "date-time"})
Timestamp = Annotated[datetime, _AS_JSON, _SCHEMA]
AwareTimestamp = Annotated[AwareDatetime, _AS_JSON, _SCHEMA]
