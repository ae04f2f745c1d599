"""Task events and webhook signatures: pure, no AWS.

Every state change of a task is an `Event` (`EVENT_TYPES`). Its `id` is the task id, the
type and the attempt: an event sent twice (a worker that died between its write and the
send, and the next delivery that sent it again) has the same id, so receivers dedupe.

Webhook POSTs carry `Stratoq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
`f"{t}.{body}"` with the subscription's secret (Stripe's scheme): `verify` checks it and
refuses a timestamp outside the replay window. `stratoq.webhooks` re-exports `verify`
for receivers; docs/webhooks.md shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from stratoq.core.clock import now_ms

EVENT_TYPES = ("queued", "started", "retrying", "succeeded", "failed", "cancelled")
SIGNATURE_HEADER = "Stratoq-Signature"
EVENT_ID_HEADER = "Stratoq-Event-Id"
DEFAULT_TOLERANCE_SECONDS = 300
# Hosts a dev stack's webhooks may reach over plain http (a receiver on this machine).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class SignatureError(ValueError):
    """A webhook request whose signature does not verify (or is too old)."""


@dataclass(frozen=True)
class Event:
    """One state change of one task."""

    type: str
    task_id: str
    tenant: str
    name: str
    queue: str
    attempt: int
    at_ms: int

    @property
    def id(self) -> str:
        """Stable across re-sends of the same change: receivers dedupe on it."""
        return f"{self.task_id}:{self.type}:{self.attempt}"

    def body(self) -> dict[str, Any]:
        """The JSON a webhook receives (and EventBridge's `detail`)."""
        return {
            "id": self.id,
            "type": f"task.{self.type}",
            "task_id": self.task_id,
            "tenant": self.tenant,
            "name": self.name,
            "queue": self.queue,
            "attempt": self.attempt,
            "at_ms": self.at_ms,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Event:
        return cls(
            type=str(body["type"]).removeprefix("task."),
            task_id=str(body["task_id"]),
            tenant=str(body["tenant"]),
            name=str(body["name"]),
            queue=str(body["queue"]),
            attempt=int(body["attempt"]),
            at_ms=int(body["at_ms"]),
        )


@dataclass(frozen=True)
class Subscription:
    """A tenant's webhook: where to POST which event types, signed with `secret`."""

    id: str
    tenant: str
    url: str
    events: frozenset[str]
    secret: str
    created_at_ms: int

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


def check_url(url: str, allow_local_http: bool) -> str | None:
    """Why `url` cannot be a webhook's (None: it can). HTTPS only, except plain http to
    this machine where `allow_local_http` (the dev stack)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and allow_local_http and parts.hostname in LOCAL_HOSTS:
        return None
    if allow_local_http:
        return "must be https:// (or http:// to 127.0.0.1 or localhost on the dev stack)"
    return "must be an https:// URL"


def check_event_types(events: list[str]) -> str | None:
    """Why `events` cannot be subscribed (None: they can)."""
    if not events:
        return "name at least one event type"
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        return f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}"
    return None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event of a webhook request, after checking its signature; raises
    SignatureError if the signature is missing or wrong, or the timestamp is more than
    `tolerance` seconds away from now (a replayed request)."""
    raw = body.encode() if isinstance(body, str) else body
    header = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("the signature has no timestamp") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise SignatureError("the timestamp is outside the tolerance (a replay?)")
    expected = sign(secret, raw, timestamp).partition("v1=")[2]
    if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", [])):
        raise SignatureError("the signature does not match")
    event: dict[str, Any] = json.loads(raw)
    return event


def retry_delay(receives: int, base_seconds: int, cap_seconds: int = 900) -> int:
    """Seconds before delivery attempt `receives + 1`: exponential from `base_seconds`."""
    return int(min(cap_seconds, base_seconds * 2 ** max(0, receives - 1)))


class SubscriptionCache:
    """A tenant's subscriptions, read through `read` at most once per `ttl_ms` per
    tenant (as `PauseCache`): a task of a tenant without webhooks costs no read beyond
    that, and a new subscription reaches workers within `ttl_ms`. A failed read keeps
    what was known. Thread-safe."""

    def __init__(
        self,
        read: Callable[[str], list[Subscription]],
        ttl_ms: int,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._read = read
        self.ttl_ms = max(0, ttl_ms)
        self._clock = clock
        self._known: dict[str, tuple[int, list[Subscription]]] = {}
        self._lock = threading.Lock()

    def of(self, tenant: str) -> list[Subscription]:
        with self._lock:
            now = self._clock()
            read_at, subs = self._known.get(tenant, (None, []))
            if read_at is not None and now - read_at < self.ttl_ms:
                return subs
            # A failure propagates: the caller keeps its message and tries again, so an
            # event is never dropped for a read that failed.
            subs = self._read(tenant)
            self._known[tenant] = (now, subs)
            return subs
