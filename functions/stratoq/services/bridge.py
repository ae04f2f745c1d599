"""Broker bridges: RabbitMQ and Kafka messages become tasks on the one enqueue path.

A message body is a TaskRequest as JSON (`{"name": ..., "payload": ..., "queue": ...}`).
Brokers deliver at least once, so every message carries an idempotency key derived from
its broker identity (`kafka_key`, `rabbitmq_key`) unless the body brings its own key (or
`unique`): a redelivered message finds the task its first delivery made and enqueues
nothing. The transports around this module (handlers/ingest.py on Lambda, rabbitmq.py
locally) acknowledge a batch only after `Bridge.submit` returned, i.e. after the tasks are
durably stored and their SQS messages sent; when it raises they hand the batch back.

Invalid messages (not JSON, not a valid TaskRequest, an unknown queue) are logged without
their content, counted and skipped, i.e. acknowledged like the rest. Retrying them cannot
help (the same bytes fail the same way) and a Kafka partition or a RabbitMQ queue would
otherwise be stuck behind them for good. Producers that need them kept should dead-letter
on their side; the log line names where each skipped message came from.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from stratoq.adapters.keys import TENANT_PATTERN
from stratoq.core.errors import ConfigError, StratoqError
from stratoq.core.models import TaskRequest
from stratoq.services.enqueue import Enqueued, Enqueuer

logger = logging.getLogger(__name__)

MAX_KEY_CHARS = 256  # TaskRequest.idempotency_key's limit


@dataclass(frozen=True)
class BrokerMessage:
    """One message as a bridge sees it: its bytes, its identity, where it came from."""

    body: bytes
    key: str  # idempotency key from the broker identity (used unless the body has one)
    ref: str  # where it came from, for logs: never the payload


@dataclass(frozen=True)
class Skipped:
    ref: str
    reason: str  # invalid_json | invalid_request | rejected
    detail: str  # field names and error types, never values from the body


@dataclass(frozen=True)
class BatchResult:
    enqueued: list[Enqueued] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for e in self.enqueued if e.created)

    @property
    def duplicates(self) -> int:
        return sum(1 for e in self.enqueued if not e.created)

    def summary(self) -> dict[str, int]:
        # "enqueued", not "created": a LogRecord attribute of that name exists already.
        return {
            "enqueued": self.created,
            "duplicates": self.duplicates,
            "skipped": len(self.skipped),
        }


def _digest(*parts: bytes) -> str:
    """SHA-256 over length-prefixed parts, so no two part lists hash alike."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _fit(prefix: str, readable: str, *parts: bytes) -> str:
    """The readable key if it fits the limit, else a digest of its parts."""
    key = f"{prefix}:{readable}"
    return key if len(key) <= MAX_KEY_CHARS else f"{prefix}:sha256:{_digest(*parts)}"


def kafka_key(topic: str, partition: int, offset: int, timestamp_ms: int) -> str:
    """A Kafka record's key: topic, partition and offset name a record for good.

    The record's timestamp is part of it because offsets start again at 0 when a topic is
    deleted and created again; without it, new records could pass for old ones within
    the idempotency window. A re-read record has the same timestamp (CREATE_TIME and
    LOG_APPEND_TIME are both stored with it).
    """
    return _fit(
        "kafka",
        f"{topic}/{partition}/{offset}/{timestamp_ms}",
        topic.encode(),
        str(partition).encode(),
        str(offset).encode(),
        str(timestamp_ms).encode(),
    )


def rabbitmq_key(
    queue: str, message_id: str | None, body: bytes, correlation_id: str | None = None
) -> str:
    """A RabbitMQ message's key. `queue` is "name::vhost", as Amazon MQ events name it.

    With a message_id the producer named the message: a redelivery and a publisher's
    retry of the same message get the same key. Without one there is no broker identity
    that survives redelivery (delivery tags are per channel and change), so the key is a
    hash of queue, correlation id and body: the bytes a redelivery repeats. Headers are
    left out because brokers add to them on redelivery (quorum queues' x-delivery-count,
    x-death). The cost: identical bodies without a message_id within the idempotency
    window make one task; producers that mean them as distinct set a message_id.
    """
    if message_id:
        parts = (b"id", queue.encode(), message_id.encode())
        if "#" in queue:  # "#" splits queue from id: a queue holding one hashes instead
            return f"amqp:sha256:{_digest(*parts)}"
        return _fit("amqp", f"{queue}#{message_id}", *parts)
    cid = (correlation_id or "").encode()
    return f"amqp:sha256:{_digest(b'body', queue.encode(), cid, body)}"


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise ConfigError(
            f"bridge tenant {tenant!r} is not a tenant name (letters, digits, _ . -, "
            "at most 64; set STRATOQ_BRIDGE_TENANT)"
        )
    return tenant


def _problems(exc: ValidationError) -> str:
    # loc and type only: pydantic's messages and inputs may quote the body.
    return "; ".join(
        f"{'.'.join(str(x) for x in err['loc']) or 'body'}: {err['type']}" for err in exc.errors()
    )


class Bridge:
    """Turns batches of broker messages into tasks of one tenant."""

    def __init__(self, enqueuer: Enqueuer, tenant: str, source: str) -> None:
        self.enqueuer = enqueuer
        self.tenant = check_tenant(tenant)
        self.source = source  # kafka | rabbitmq, for logs
        # Running totals of a long-lived bridge (the local consumer logs them).
        self.totals: Counter[str] = Counter()

    def parse(self, message: BrokerMessage) -> TaskRequest | Skipped:
        """The message's TaskRequest with its idempotency key, or why it is skipped."""
        try:
            request = TaskRequest.model_validate_json(message.body)
        except ValidationError as exc:
            kinds = {err["type"] for err in exc.errors()}
            reason = "invalid_json" if "json_invalid" in kinds else "invalid_request"
            return Skipped(message.ref, reason, _problems(exc))
        if request.debounce_key is not None or request.debounce_seconds is not None:
            # The bridge's role may not update the tasks table (the debounce item).
            detail = "debounce_key: a bridge's tasks cannot be debounced"
            return Skipped(message.ref, "rejected", detail)
        if request.effective_idempotency_key() is None:
            request = request.model_copy(update={"idempotency_key": message.key})
        try:
            # The checks enqueue makes (queue known, ...) before the batch is sent: one
            # bad message must not fail the batch, or the good ones would never pass.
            self.enqueuer.build(request, self.tenant)
        except ValidationError as exc:
            return Skipped(message.ref, "rejected", _problems(exc))
        except StratoqError as exc:  # our messages name the setting or field, not the body
            return Skipped(message.ref, "rejected", f"{type(exc).__name__}: {exc}"[:300])
        return request

    def submit(self, messages: Sequence[BrokerMessage]) -> BatchResult:
        """Enqueue the valid messages (idempotently), skip the invalid ones.

        Raises when the enqueue fails: the caller must then not acknowledge the batch.
        """
        requests: list[TaskRequest] = []
        skipped: list[Skipped] = []
        for message in messages:
            parsed = self.parse(message)
            if isinstance(parsed, Skipped):
                skipped.append(parsed)
                logger.warning(
                    "broker message skipped",
                    extra={
                        "source": self.source,
                        "ref": parsed.ref,
                        "reason": parsed.reason,
                        "detail": parsed.detail,
                    },
                )
            else:
                requests.append(parsed)
        enqueued = self.enqueuer.enqueue_many(requests, self.tenant) if requests else []
        result = BatchResult(enqueued, skipped)
        self.totals.update(result.summary())
        logger.info(
            "broker batch enqueued",
            extra={"source": self.source, "tenant": self.tenant, **result.summary()},
        )
        return result
