"""Fresh identifiers: task ids (time-ordered) and lease tokens."""

from __future__ import annotations

import os
import time
import uuid


def new_task_id(now_ms: int | None = None) -> str:
    """32 hex chars, time-ordered: 48 bits of milliseconds, then 80 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{ms:012x}{os.urandom(10).hex()}"


def new_token() -> str:
    """A random lease token (32 hex chars); fences the writes of one claim."""
    return uuid.uuid4().hex
