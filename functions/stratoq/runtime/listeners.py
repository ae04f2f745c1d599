"""An idle poller's long polls: one per SQS queue at a time, all waiting at once.

A poller with several priority queues that finds them all empty must wait on every one
of them: long-polling them in turn would leave a message on another queue waiting for
the current poll to time out. SQS has no receive across queues, so each queue gets its
own long poll in a thread; what any of them receives is handed to the poller as it
arrives. A queue has at most one poll in flight, so an idle poller costs one request
per queue per poll wait.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from stratoq.adapters.transport import Delivery

logger = logging.getLogger(__name__)

# After a failed receive a queue's poll ends this long later, so a broken endpoint is not
# asked in a tight loop (the poller's own loop waits as long after its failures).
RETRY_SECONDS = 1.0

Receive = Callable[[str, int], list[Delivery]]
# (key, how many were asked for, what came): every poll's end, messages or none.
Arrived = Callable[[str, int, list[Delivery]], None]


class Listeners:
    """Long polls in flight, by STRATOQ_QUEUES key."""

    def __init__(self, receive: Receive, arrived: Arrived) -> None:
        self._receive = receive
        self._arrived = arrived
        self._cond = threading.Condition()
        self._inflight: set[str] = set()
        self._ended = 0  # polls ended so far: `wait` returns when this moves
        self._closing = threading.Event()

    def busy(self, key: str) -> bool:
        """Whether a long poll on `key` is in flight (asking it again would only cost)."""
        with self._cond:
            return key in self._inflight

    def wait(self, counts: Mapping[str, int], timeout: float) -> None:
        """Start a long poll for `counts[key]` messages on each key that has none in
        flight, then return once any poll in flight ends (its messages already handed
        to `arrived`), on `wake`, or after `timeout` seconds."""
        with self._cond:
            ended = self._ended
            for key, count in counts.items():
                if key in self._inflight or count <= 0 or self._closing.is_set():
                    continue
                self._inflight.add(key)
                threading.Thread(
                    target=self._poll, args=(key, count), name=f"stratoq-listen-{key}", daemon=True
                ).start()
            self._cond.wait_for(
                lambda: self._ended != ended or self._closing.is_set(), timeout=timeout
            )

    def wake(self) -> None:
        """Make `wait` return now and start no more polls (the poller is stopping)."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait for the polls in flight to end; whether they all did."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._inflight, timeout=timeout)

    def _poll(self, key: str, count: int) -> None:
        got: list[Delivery] = []
        try:
            got = self._receive(key, count)
        except Exception:
            logger.exception("receive failed; retrying", extra={"queue": key})
            self._closing.wait(RETRY_SECONDS)
        try:
            self._arrived(key, count, got)
        except Exception:
            # The messages reappear when their visibility timeout ends.
            logger.exception("handing on received messages failed", extra={"queue": key})
        finally:
            with self._cond:
                self._inflight.discard(key)
                self._ended += 1
                self._cond.notify_all()
