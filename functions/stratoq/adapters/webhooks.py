"""Webhook subscriptions and dead letters in the tasks table; the events queue; the
EventBridge bus; the signed POST.

- `pk` = "webhooks#<tenant>": one item per tenant, `subs` (M) subscription id -> {url,
  events (SS), secret, created_at}. One item so a worker learns a tenant's whole list
  with one GetItem per cache TTL (`core.events.SubscriptionCache`).
- `pk` = "webhook-failures#<tenant>#<subscription id>": `failures` (L), the dead-letter
  records of events whose last delivery attempt failed, oldest first, at most
  `MAX_FAILURES`; later ones are counted in `dropped`.

Neither has `name`, `listed` or `created_at`, so neither is read as a task nor listed.
Secrets are stored as given (the table is encrypted at rest) and answered only when a
subscription is created.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from stratoq.core.errors import InvalidRequestError, NotFoundError
from stratoq.core.events import EVENT_ID_HEADER, SIGNATURE_HEADER, Event, Subscription, sign

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sqs.client import SQSClient

MAX_SUBSCRIPTIONS = 20
MAX_FAILURES = 100
POST_TIMEOUT_SECONDS = 10


class WebhookNotFoundError(NotFoundError):
    """No such webhook (or another tenant's)."""


def _pk(tenant: str) -> str:
    return f"webhooks#{tenant}"


def _failures_pk(tenant: str, sub_id: str) -> str:
    return f"webhook-failures#{tenant}#{sub_id}"


class SubscriptionStore:
    """Creates, lists and deletes a tenant's webhooks; records their dead letters."""

    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._db = client
        self.table = table

    def of(self, tenant: str, consistent: bool = False) -> list[Subscription]:
        """The tenant's webhooks, oldest first (workers read eventually consistent)."""
        out = self._db.get_item(
            TableName=self.table, Key={"pk": {"S": _pk(tenant)}}, ConsistentRead=consistent
        )
        subs = out.get("Item", {}).get("subs", {}).get("M", {})
        found = [
            Subscription(
                id=sub_id,
                tenant=tenant,
                url=v["M"]["url"]["S"],
                events=frozenset(v["M"]["events"]["SS"]),
                secret=v["M"]["secret"]["S"],
                created_at_ms=int(v["M"]["created_at"]["N"]),
            )
            for sub_id, v in subs.items()
        ]
        return sorted(found, key=lambda s: (s.created_at_ms, s.id))

    def get(self, tenant: str, sub_id: str) -> Subscription:
        for sub in self.of(tenant, consistent=True):
            if sub.id == sub_id:
                return sub
        raise WebhookNotFoundError(f"no webhook {sub_id!r}")

    def create(self, sub: Subscription) -> None:
        value = {
            "M": {
                "url": {"S": sub.url},
                "events": {"SS": sorted(sub.events)},
                "secret": {"S": sub.secret},
                "created_at": {"N": str(sub.created_at_ms)},
            }
        }
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": _pk(sub.tenant)}},
                UpdateExpression="SET subs = if_not_exists(subs, :empty)",
                # Closes the race of two creates when the map is nearly full: each
                # checks the size it adds to, so a tenant never passes the limit.
                ConditionExpression="attribute_not_exists(subs) OR size(subs) < :max",
                ExpressionAttributeValues={
                    ":empty": {"M": {}},
                    ":max": {"N": str(MAX_SUBSCRIPTIONS)},
                },
            )
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": _pk(sub.tenant)}},
                UpdateExpression="SET subs.#id = :sub",
                # Closes the race of a concurrent delete of the whole map (none today)
                # and never overwrites an id already taken (ids are random anyway).
                ConditionExpression="attribute_exists(subs) AND attribute_not_exists(subs.#id)",
                ExpressionAttributeNames={"#id": sub.id},
                ExpressionAttributeValues={":sub": value},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise InvalidRequestError(
                f"a tenant has at most {MAX_SUBSCRIPTIONS} webhooks; delete one first",
                field="url",
            ) from None

    def delete(self, tenant: str, sub_id: str) -> None:
        try:
            self._db.update_item(
                TableName=self.table,
                Key={"pk": {"S": _pk(tenant)}},
                UpdateExpression="REMOVE subs.#id",
                # Closes the race of two deletes: the second answers 404, not 200.
                ConditionExpression="attribute_exists(subs.#id)",
                ExpressionAttributeNames={"#id": sub_id},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            raise WebhookNotFoundError(f"no webhook {sub_id!r}") from None
        self._db.delete_item(TableName=self.table, Key={"pk": {"S": _failures_pk(tenant, sub_id)}})

    def record_failure(self, sub: Subscription, record: dict[str, Any]) -> None:
        """Keep the dead-letter record of an event whose last delivery failed."""
        key = {"pk": {"S": _failures_pk(sub.tenant, sub.id)}}
        try:
            self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET failures = list_append(if_not_exists(failures, :e), :r)",
                # Closes the race of dead letters recorded at once by two deliverers:
                # each checks the length it appends to, so the item stays bounded.
                ConditionExpression="attribute_not_exists(failures) OR size(failures) < :max",
                ExpressionAttributeValues={
                    ":e": {"L": []},
                    ":r": {"L": [{"S": json.dumps(record)}]},
                    ":max": {"N": str(MAX_FAILURES)},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Unconditional: ADD is atomic.
            self._db.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="ADD dropped :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )

    def failures(self, tenant: str, sub_id: str) -> tuple[list[dict[str, Any]], int]:
        """A webhook's dead-letter records (oldest first) and how many were not kept."""
        self.get(tenant, sub_id)
        out = self._db.get_item(
            TableName=self.table,
            Key={"pk": {"S": _failures_pk(tenant, sub_id)}},
            ConsistentRead=True,
        )
        item = out.get("Item", {})
        records = [json.loads(v["S"]) for v in item.get("failures", {}).get("L", [])]
        return records, int(item.get("dropped", {}).get("N", "0"))


class EventQueue:
    """The events queue: one message per (event, subscription) to deliver."""

    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, event: Event, sub_ids: list[str]) -> None:
        entries: list[Any] = [
            {
                "Id": str(i),
                "MessageBody": json.dumps({"event": event.body(), "subscription": sub_id}),
            }
            for i, sub_id in enumerate(sub_ids)
        ]
        for start in range(0, len(entries), 10):
            out = self.client.send_message_batch(
                QueueUrl=self.url, Entries=entries[start : start + 10]
            )
            if out.get("Failed"):
                # Raised so the caller keeps its task message: the event is sent again.
                raise RuntimeError(f"sending {len(out['Failed'])} event message(s) failed")


class EventBus:
    """Events put on an EventBridge bus (source `stratoq`, detail-type `task.<type>`)."""

    def __init__(self, client: EventBridgeClient, bus: str) -> None:
        self.client = client
        self.bus = bus

    def put(self, event: Event) -> None:
        out = self.client.put_events(
            Entries=[
                {
                    "Source": "stratoq",
                    "DetailType": f"task.{event.type}",
                    "Detail": json.dumps(event.body()),
                    "EventBusName": self.bus,
                }
            ]
        )
        if out.get("FailedEntryCount"):
            raise RuntimeError("putting the event on the bus failed")


def post(sub: Subscription, body: bytes, event_id: str, timestamp: int) -> int | str:
    """POST a signed event to the webhook: its HTTP status, or why no answer came."""
    # The URL's scheme is checked when the webhook is created (https, or local http).
    request = urllib.request.Request(  # noqa: S310  # nosec B310
        sub.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "stratoq-webhooks",
            SIGNATURE_HEADER: sign(sub.secret, body, timestamp),
            EVENT_ID_HEADER: event_id,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=POST_TIMEOUT_SECONDS) as resp:  # noqa: S310  # nosec B310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
