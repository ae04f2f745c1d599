"""Per-API-key throttling of the local gateway: one token bucket per key.

Like an API Gateway usage plan, a key may make `burst` requests at once and `rate`
requests per second after that; a request over the limit is answered 429
`{"message": "Too Many Requests"}` before the authorizer runs. Buckets are keyed by a
hash of the presented key (the key itself is never kept) and held in a bounded LRU, so
a flood of made-up keys cannot grow memory.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class KeyThrottle:
    """Token buckets per API key. `allow(key)` takes a token if there is one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        ident = hashlib.sha256(key.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(ident)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
                self._buckets[ident] = bucket
                while len(self._buckets) > self._max:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(ident)
                elapsed = max(0.0, now - bucket.updated)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
                bucket.updated = now
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True
