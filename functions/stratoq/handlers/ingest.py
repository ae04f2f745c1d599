"""Lambda target of broker event source mappings: Amazon MQ for RabbitMQ and Kafka
(Amazon MSK or self-managed). Each message becomes a task through stratoq.services.bridge.

Neither source has partial batch responses: when the enqueue fails the handler raises,
and the event source mapping delivers the whole batch again. That is safe because every
message's enqueue is idempotent (its key comes from its broker identity). Invalid messages
are skipped and logged (see stratoq.services.bridge), so they never hold up a partition or queue.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stratoq.handlers.edge import entry
from stratoq.observability.logging import stream_handler
from stratoq.services.app import Services
from stratoq.services.bridge import Bridge, BrokerMessage, kafka_key, rabbitmq_key

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())


# The parts of the events we read (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html,
# with-msk.html, with-kafka.html); the rest is ignored, so new fields AWS adds do no harm.
class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KafkaRecord(_Lenient):
    topic: str
    partition: int
    offset: int
    timestamp: int = 0
    value: str | None = None  # base64; null for a tombstone (which is skipped)


class KafkaEvent(_Lenient):
    eventSource: Literal["aws:kafka", "SelfManagedKafka"]
    records: dict[str, list[KafkaRecord]]  # by "topic-partition"


class BasicProperties(_Lenient):
    messageId: str | None = None
    correlationId: str | None = None


class RabbitMessage(_Lenient):
    basicProperties: BasicProperties = Field(default_factory=BasicProperties)
    redelivered: bool = False
    data: str = ""  # base64


class RabbitEvent(_Lenient):
    eventSource: Literal["aws:rmq"]
    eventSourceArn: str = ""
    rmqMessagesByQueue: dict[str, list[RabbitMessage]]  # by "queue::vhost"


def _decode(data: str | None) -> bytes:
    # AWS always sends valid base64; should it not, the empty body is skipped as invalid
    # JSON like any other unreadable message instead of failing the whole batch.
    if not data:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return b""


def messages_from_event(event: dict[str, Any]) -> tuple[str, list[BrokerMessage]]:
    """(source, messages) of an Amazon MQ RabbitMQ or Kafka event, in delivery order."""
    source = event.get("eventSource")
    if source == "aws:rmq":
        rmq = RabbitEvent.model_validate(event)
        return "rabbitmq", [
            BrokerMessage(
                body=(body := _decode(m.data)),
                key=rabbitmq_key(
                    queue, m.basicProperties.messageId, body, m.basicProperties.correlationId
                ),
                ref=f"{queue}#{i}",
            )
            for queue, batch in rmq.rmqMessagesByQueue.items()
            for i, m in enumerate(batch)
        ]
    if source in ("aws:kafka", "SelfManagedKafka"):
        kafka = KafkaEvent.model_validate(event)
        return "kafka", [
            BrokerMessage(
                body=_decode(r.value),
                key=kafka_key(r.topic, r.partition, r.offset, r.timestamp),
                ref=f"{r.topic}/{r.partition}@{r.offset}",
            )
            for batch in kafka.records.values()
            for r in batch
        ]
    # A mapping this function was not made for: fail loudly rather than drop its events.
    raise ValueError(f"unsupported event source {source!r}; expected aws:rmq or Kafka")


class IngestFunction:
    """The ingest function: Amazon MQ (RabbitMQ) and Kafka batches into tasks."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._bridges: dict[str, Bridge] = {}

    def bridge(self, source: str) -> Bridge:
        if source not in self._bridges:
            tenant = self.services.settings.bridge_tenant
            self._bridges[source] = Bridge(self.services.enqueuer, tenant, source)
        return self._bridges[source]

    def __call__(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, int]:
        source, messages = messages_from_event(event)
        bridge = self.bridge(source)
        try:
            result = bridge.submit(messages)
        except Exception as exc:
            logger.error(
                "broker batch not enqueued; the event source mapping will deliver it again",
                extra={
                    "source": source,
                    "count": len(messages),
                    "error_type": type(exc).__name__,
                },
            )
            raise
        return result.summary()


lambda_handler = entry(IngestFunction)
