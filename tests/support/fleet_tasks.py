"""A second team's tasks module: its own fleet of workers runs it (the dev stack does not)."""

from __future__ import annotations

import os
from typing import Any

from stratoq import context, task


@task("invoice")
def invoice(payload: Any) -> dict[str, Any]:
    """Which process ran which attempt: the caller checks it was this fleet, once."""
    return {"pid": os.getpid(), "attempt": context().attempt, "payload": payload}
