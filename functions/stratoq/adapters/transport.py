"""SQS transport: batched sends, long-poll receives, lease extension, batched deletes.

A message carries only the task id, the tenant, its name, (for waits longer than SQS
allows) the time the task is due and, while tracing, the enqueue's span context.
Everything else is read from the task store when the task is claimed, so a message is
tiny and never holds a payload.

Every message to a standard queue carries MessageGroupId = its tenant (`group_id`): that
makes the queue an SQS fair queue, which hands a quiet tenant's messages out before a
flooding tenant's backlog (docs/flow-control.md, "Tenant fairness"); the embedded
emulator does the same (stratoq.local.moto_fair).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from stratoq.core.errors import EnqueueError, UnknownQueueError
from stratoq.core.limits import TaskLimits, parse_rate
from stratoq.core.models import MAX_SQS_DELAY, Task
from stratoq.core.policy import hop_delay, token_delay
from stratoq.core.priority import DEFAULT, PRIORITIES, logical_queues, route, split_key

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

SQS_BATCH = 10
SEND_ATTEMPTS = 4
# What SQS accepts as a MessageGroupId: 1 to 128 alphanumeric or punctuation characters.
_GROUP_ID = re.compile(r"[!-~]{1,128}")


def group_id(tenant: str) -> str:
    """The MessageGroupId of a tenant's messages: the tenant id itself when SQS accepts it
    (every id the API admits does), else a digest of it, so one tenant is one group."""
    if _GROUP_ID.fullmatch(tenant):
        return tenant
    return "sha256-" + hashlib.sha256(tenant.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class TaskMessage:
    """The body of a task message."""

    task_id: str
    tenant: str
    not_before_ms: int | None = None
    # The task's name, so a worker with no handler for it hands it back without a claim
    # (messages sent before names were added have none: such a worker claims to learn it).
    name: str | None = None
    # When a worker first handed the task back for not knowing its name (epoch ms).
    unknown_since_ms: int | None = None
    # When a worker first handed the task back unspent because it had to wait (its
    # queue or name paused; epoch ms): the hand-back delay grows with the wait.
    waiting_since_ms: int | None = None
    # When the enqueuer sent it, before storing the task (epoch ms; only on an
    # enqueue's first message): a worker that finds no record waits for it this long
    # after, then drops the message as an orphan. Not part of what the message means.
    enqueued_ms: int | None = field(default=None, compare=False)
    # The span context of the enqueue that sent it (a W3C traceparent; only while the
    # sender traces, observability/tracing.py): the worker's spans continue that trace.
    # Hand-backs and retries keep it: every attempt is a child of the one enqueue.
    trace: str | None = field(default=None, compare=False)
    # The task's own concurrency and rate limits (None: it has none), so a worker checks
    # them before claiming, and a task without any costs no request for them.
    limits: TaskLimits | None = None
    # When the rate-limit token this task took is its own (epoch ms): it starts then
    # without taking another. Only until it starts: a retry takes a new token.
    rate_paid_ms: int | None = None

    def encode(self) -> str:
        body: dict[str, Any] = {"id": self.task_id, "t": self.tenant}
        if self.not_before_ms is not None:
            body["nb"] = self.not_before_ms
        if self.name is not None:
            body["n"] = self.name
        if self.unknown_since_ms is not None:
            body["u"] = self.unknown_since_ms
        if self.waiting_since_ms is not None:
            body["w"] = self.waiting_since_ms
        if self.enqueued_ms is not None:
            body["e"] = self.enqueued_ms
        if self.trace is not None:
            body["tp"] = self.trace
        if self.limits is not None:
            for key, value in zip(_LIMIT_KEYS, astuple(self.limits), strict=True):
                if value is not None:
                    body[key] = value
        if self.rate_paid_ms is not None:
            body["rp"] = self.rate_paid_ms
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, body: str) -> TaskMessage:
        """Parse a body; raises ValueError for anything that is not a task message."""
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not data["id"]:
            raise ValueError("message body has no task id")
        for key in ("nb", "u", "w", "e", "rp", "mc"):
            value = data.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"message field {key} is not epoch milliseconds")
        for key in ("n", "ck", "rl", "rk"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"message field {key} is not a string")
        name = data.get("n")
        limits = TaskLimits(*(data.get(k) for k in _LIMIT_KEYS))
        if limits.max_concurrency is not None and limits.max_concurrency < 1:
            raise ValueError("message field mc is not a concurrency limit")
        if limits.rate_limit is not None:
            parse_rate(limits.rate_limit)  # its ValueError says what is wrong
        return cls(
            task_id=data["id"],
            tenant=str(data.get("t", "default")),
            not_before_ms=data.get("nb"),
            name=name,
            unknown_since_ms=data.get("u"),
            waiting_since_ms=data.get("w"),
            enqueued_ms=data.get("e"),
            # A trace is never worth a task: one that is not text is ignored, not fatal.
            trace=trace if isinstance(trace := data.get("tp"), str) and trace else None,
            limits=None if limits == TaskLimits() else limits,
            rate_paid_ms=data.get("rp"),
        )


# Body keys of TaskLimits' fields, in their order.
_LIMIT_KEYS = ("ck", "mc", "rl", "rk")


def limits_of(task: Task) -> TaskLimits | None:
    """The limits a task's messages carry (None: it has none)."""
    limits = TaskLimits(
        task.concurrency_key, task.max_concurrency, task.rate_limit, task.rate_limit_key
    )
    return None if limits == TaskLimits() else limits


@dataclass(frozen=True)
class Outgoing:
    queue: str  # a STRATOQ_QUEUES key: a logical queue or one of its priority queues
    message: TaskMessage
    delay_seconds: int = 0


@dataclass(frozen=True)
class Delivery:
    """One received message (from a poller's receive or a Lambda SQS event)."""

    queue_url: str
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int = 1


class SqsTransport:
    """The narrow set of SQS calls stratoq makes, batched wherever SQS allows."""

    def __init__(self, client: SQSClient, queues: dict[str, str], *, fair: bool = True) -> None:
        self._sqs = client
        self._fair = fair  # MessageGroupId = tenant on standard queues (`group_id`)
        self._queues = dict(queues)
        self._urls: dict[str, str] = {}
        self._dlq_arns: dict[str, str | None] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> SQSClient:
        """The SQS client underneath (for code that shares this transport's connection)."""
        return self._sqs

    @property
    def queue_names(self) -> list[str]:
        """The logical queues (what a task's `queue` may name)."""
        return logical_queues(self._queues)

    @property
    def keys(self) -> list[str]:
        """Every configured SQS queue by its STRATOQ_QUEUES key (`default`, `default:high`)."""
        return list(self._queues)

    def route(self, queue: str, priority: str) -> str:
        """The key a task of this queue and priority is sent to (see stratoq.core.priority)."""
        return route(self._queues, queue, priority)

    def url(self, queue: str) -> str:
        """The SQS URL of a key: a logical queue or a priority queue (cached)."""
        with self._lock:
            if queue in self._urls:
                return self._urls[queue]
        target = self._queues.get(queue)
        if target is None:
            known = ", ".join(sorted(self._queues))
            raise UnknownQueueError(f"unknown queue {queue!r}; this deployment has: {known}")
        if not target.startswith(("http://", "https://")):
            target = self._sqs.get_queue_url(QueueName=target)["QueueUrl"]
        with self._lock:
            self._urls[queue] = target
        return target

    def url_from_arn(self, arn: str) -> str:
        """Queue URL for an event source ARN (arn:aws:sqs:region:account:name)."""
        with self._lock:
            if arn in self._urls:
                return self._urls[arn]
        parts = arn.split(":")
        name = parts[5]
        # Configured URLs end in the queue name: no GetQueueUrl call (or permission) needed.
        known = [u for u in self._queues.values() if u.rstrip("/").endswith("/" + name)]
        if known:
            url = known[0]
        else:
            url = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=parts[4])[
                "QueueUrl"
            ]
        with self._lock:
            self._urls[arn] = url
        return url

    def send(self, messages: Sequence[Outgoing]) -> None:
        """Send messages in batches of 10 per queue; raises EnqueueError if any is refused."""
        by_queue: dict[str, list[Outgoing]] = {}
        for m in messages:
            by_queue.setdefault(self.url(m.queue), []).append(m)
        for url, items in by_queue.items():
            for start in range(0, len(items), SQS_BATCH):
                self._send_batch(url, items[start : start + SQS_BATCH])

    def _send_batch(self, url: str, batch: list[Outgoing]) -> None:
        # Every task message (enqueues, hops, retries, hand-backs, workflow nodes, DLQ
        # requeues) is sent here. A FIFO queue's groups would mean ordering, not tenants.
        fair = self._fair and not url.endswith(".fifo")
        pending: dict[str, Any] = {
            str(i): {
                "Id": str(i),
                "MessageBody": m.message.encode(),
                "DelaySeconds": max(0, min(MAX_SQS_DELAY, m.delay_seconds)),
                **({"MessageGroupId": group_id(m.message.tenant)} if fair else {}),
            }
            for i, m in enumerate(batch)
        }
        for attempt in range(SEND_ATTEMPTS):
            out = self._sqs.send_message_batch(QueueUrl=url, Entries=list(pending.values()))
            for ok in out.get("Successful", []):
                pending.pop(ok["Id"], None)
            failed = out.get("Failed", [])
            if not pending:
                return
            if any(f.get("SenderFault") for f in failed):
                reason = "; ".join(f"{f['Code']}: {f.get('Message', '')}" for f in failed)
                raise EnqueueError(f"SQS refused {len(pending)} message(s): {reason}")
            time.sleep(0.05 * 2**attempt)  # SQS-side fault: back off, resend the rest
        raise EnqueueError(f"SQS did not accept {len(pending)} message(s) after retries")

    def receive(
        self, queue: str, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[Delivery]:
        return self.receive_url(self.url(queue), max_messages, wait_seconds, visibility_seconds)

    def delete(self, deliveries: Iterable[Delivery]) -> None:
        """Acknowledge deliveries (batched). A stale receipt handle is not an error."""
        for url, group in _by_url(deliveries):
            for start in range(0, len(group), SQS_BATCH):
                chunk = group[start : start + SQS_BATCH]
                self._sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": d.receipt_handle}
                        for i, d in enumerate(chunk)
                    ],
                )

    def stats(self, queue: str) -> dict[str, Any]:
        """Approximate visible / in-flight / delayed counts, and the DLQ's visible count.

        `queue` is a key; the row names its logical queue and priority. A priority queue
        that shares its logical queue's dead-letter queue reports `dead_letter` None: the
        default row counts it, so sums over priorities do not count it three times.
        """
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attrs: dict[str, str] = self._sqs.get_queue_attributes(  # type: ignore[assignment]
            QueueUrl=self.url(queue),
            AttributeNames=[*names, "RedrivePolicy"],  # type: ignore[list-item]
        )["Attributes"]
        dead: int | None = 0
        dlq_arn = _dlq_arn(attrs)
        with self._lock:
            self._dlq_arns[queue] = dlq_arn
        logical, priority = split_key(queue)
        shared = (
            priority != DEFAULT
            and dlq_arn is not None
            and logical in self._queues
            and self._dlq_arn_of(logical) == dlq_arn
        )
        if shared:
            dead = None
        elif dlq_arn is not None:
            dlq_url = self.url_from_arn(dlq_arn)
            dead = int(
                self._sqs.get_queue_attributes(
                    QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]["ApproximateNumberOfMessages"]
            )
        return {
            "queue": logical,
            "priority": priority,
            "visible": int(attrs[names[0]]),
            "in_flight": int(attrs[names[1]]),
            "delayed": int(attrs[names[2]]),
            "dead_letter": dead,
        }

    def dead_letter_url(self, queue: str) -> str | None:
        """The URL of a logical queue's DLQ, from its RedrivePolicy (None: it has none).

        Read from SQS rather than configured, so whatever queues feed one DLQ (several
        priority queues may share a logical queue's), the DLQ is the one SQS uses.
        """
        attrs: dict[str, str] = self._sqs.get_queue_attributes(  # type: ignore[assignment]
            QueueUrl=self.url(queue), AttributeNames=["RedrivePolicy"]
        ).get("Attributes", {})
        arn = _dlq_arn(attrs)
        return None if arn is None else self.url_from_arn(arn)

    def receive_url(
        self, url: str, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[Delivery]:
        """Receive from a queue by URL (a DLQ has no logical name)."""
        out = self._sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(SQS_BATCH, max_messages)),
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Delivery(
                queue_url=url,
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in out.get("Messages", [])
        ]

    def _dlq_arn_of(self, key: str) -> str | None:
        """The dead-letter queue ARN of a key (read once: redrive policies rarely change)."""
        with self._lock:
            if key in self._dlq_arns:
                return self._dlq_arns[key]
        attrs: dict[str, str] = self._sqs.get_queue_attributes(  # type: ignore[assignment]
            QueueUrl=self.url(key), AttributeNames=["RedrivePolicy"]
        ).get("Attributes", {})
        arn = _dlq_arn(attrs)
        with self._lock:
            self._dlq_arns[key] = arn
        return arn

    def change_visibility(self, changes: Iterable[tuple[Delivery, int]]) -> None:
        """Set deliveries' visibility timeouts (extend a lease, or release for later)."""
        grouped: dict[str, list[tuple[Delivery, int]]] = {}
        for d, seconds in changes:
            grouped.setdefault(d.queue_url, []).append((d, seconds))
        for url, group in grouped.items():
            for start in range(0, len(group), SQS_BATCH):
                chunk = group[start : start + SQS_BATCH]
                self._sqs.change_message_visibility_batch(
                    QueueUrl=url,
                    Entries=[
                        {
                            "Id": str(i),
                            "ReceiptHandle": d.receipt_handle,
                            "VisibilityTimeout": seconds,
                        }
                        for i, (d, seconds) in enumerate(chunk)
                    ],
                )


def queue_stats(transport: SqsTransport) -> list[dict[str, Any]]:
    """Message counts per logical queue and priority (high, default, low), dead-letter
    queue included."""
    names = transport.queue_names

    def rank(key: str) -> tuple[int, int]:
        queue, priority = split_key(key)
        return names.index(queue), PRIORITIES.index(priority)

    return [transport.stats(key) for key in sorted(transport.keys, key=rank)]


def _dlq_arn(attrs: dict[str, str]) -> str | None:
    if "RedrivePolicy" not in attrs:
        return None
    return str(json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"])


def _by_url(deliveries: Iterable[Delivery]) -> list[tuple[str, list[Delivery]]]:
    grouped: dict[str, list[Delivery]] = {}
    for d in deliveries:
        grouped.setdefault(d.queue_url, []).append(d)
    return list(grouped.items())


def outgoing_for(queue: str, msg: TaskMessage, due_ms: int | None, now: int) -> Outgoing:
    """The message that delivers a task at `due_ms`: SQS delay if it fits, else a hop.

    Towards the task's rate-limit token (`due_ms` its `rate_paid_ms`), the delay rounds
    down: the message comes less than a second early, and the worker sleeps out the rest
    before it starts the task (`stratoq.core.policy.token_wait`), so starts are at their
    tokens, never before and not bunched up to a second after. Its token, carried in
    the message, is all the worker needs: no `not_before_ms`.
    """
    if due_ms is None or due_ms <= now:
        return Outgoing(queue, replace(msg, not_before_ms=None))
    if due_ms == msg.rate_paid_ms:
        return Outgoing(queue, replace(msg, not_before_ms=None), token_delay(due_ms, now))
    delay = hop_delay(due_ms, now)
    nb = None if due_ms - now <= delay * 1000 else due_ms
    return Outgoing(queue, replace(msg, not_before_ms=nb), delay)
