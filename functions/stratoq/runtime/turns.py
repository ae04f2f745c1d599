"""Tenants' turns in a poller's prefetch buffer (start-time fair queuing).

A poller holds a few received messages beyond its free slots (runtime/poller.py,
`prefetch_count`). Taken in arrival order, a buffer full of a flooding tenant's messages
would make a quiet tenant's message, which the (fair) queue just handed out first, wait
behind all of them. So each buffered message gets a tag: one more than the later of the
tag last started and its tenant's previous tag. Slots take the lowest tag first: a quiet
tenant's message is next (or next but one), a flooding tenant's wait their turn, and
each tenant's own messages keep their arrival order.
"""

from __future__ import annotations

import json
import threading

# A tenant whose last tag is already passed is forgotten (its next message would get
# the same tag without it); the map is swept when it grows past this.
_SWEEP_AT = 1024


class Turns:
    """Tags for buffered messages, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}
        self._started = 0

    def tag(self, tenant: str) -> int:
        """The tag of a message of `tenant` put in the buffer now."""
        with self._lock:
            tag = max(self._started, self._last.get(tenant, 0)) + 1
            self._last[tenant] = tag
            if len(self._last) > _SWEEP_AT:
                self._last = {t: v for t, v in self._last.items() if v > self._started}
            return tag

    def started(self, tag: int) -> None:
        """A slot took the message of this tag."""
        with self._lock:
            self._started = max(self._started, tag)


def tenant_of(body: str) -> str:
    """The tenant a task message's body names ("" for a body that is no task message:
    the worker rejects those; here they only need some turn)."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    tenant = data.get("t", "default") if isinstance(data, dict) else ""
    return tenant if isinstance(tenant, str) else ""
