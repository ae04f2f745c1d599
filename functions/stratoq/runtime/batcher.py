"""Batching of SQS calls that many slot threads make one at a time (deletes)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class Batcher:
    """Collects items from many threads and hands them to `flush` in batches of 10."""

    def __init__(self, flush: Callable[[list[Any]], None], name: str, linger: float = 0.02) -> None:
        self._flush = flush
        # Waiting a moment for more items fills batches under load (one request acks up
        # to 10 messages) at a cost of at most `linger` seconds per acknowledgement.
        self._linger = linger
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        self._q.put(item)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            stop = False
            deadline = time.monotonic() + self._linger
            while len(batch) < 10:
                try:
                    nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            try:
                self._flush(batch)
            except Exception:
                # Unacknowledged messages reappear and are recognised as done: no loss.
                logger.exception("batched SQS call failed", extra={"count": len(batch)})
            if stop:
                return

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(10)
