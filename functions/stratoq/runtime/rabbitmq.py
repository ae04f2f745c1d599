"""`stratoq bridge rabbitmq`: consume a RabbitMQ queue, enqueue each message as a task.

The loop, in one thread with pika's blocking adapter:

    receive up to --prefetch messages (waiting at most --linger after the first)
    -> Bridge.submit (store + SQS send, idempotent per message)
    -> basic_ack(last delivery tag, multiple=True)

A message is acknowledged only after its task is durably enqueued (or it was skipped as
invalid), so a crash anywhere before the ack makes the broker deliver it again, and the
idempotency key turns that redelivery into no new task. When the enqueue fails the batch
is handed back (basic_nack with requeue) and the bridge waits, backing off, before it
takes messages again. SIGTERM or SIGINT: the batch in hand is finished, the consumer is
cancelled (messages pika had buffered go back to the queue) and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from types import FrameType
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import Basic, BasicProperties

from stratoq.core.errors import ConfigError
from stratoq.observability.logging import configure as configure_logging
from stratoq.services.bridge import Bridge, BrokerMessage, rabbitmq_key

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class RabbitOptions:
    url: str
    queue: str
    prefetch: int = 10
    linger: float = 0.2  # seconds to wait for more messages once a batch has begun


def vhost_of(url: str) -> str:
    """The virtual host an AMQP URL names ("/" when it names none, as pika does)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def safe_url(url: str) -> str:
    """The URL without credentials, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ConfigError(
            "the RabbitMQ URL is malformed; expected amqp://user:pass@host:port/vhost"
        ) from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(
            "the RabbitMQ URL must look like amqp://user:pass@host:5672/vhost (or amqps://)"
        )
    return url


class _Stop:
    """Set by SIGTERM/SIGINT; the loop looks at it between messages."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


class RabbitBridge:
    def __init__(self, bridge: Bridge, options: RabbitOptions) -> None:
        self.bridge = bridge
        self.options = options
        # Keys name the queue as "name::vhost", as Amazon MQ events do, so a message has
        # the same key whether this process or the ingest Lambda takes it.
        self.queue_id = f"{options.queue}::{vhost_of(options.url)}"
        self.stop = _Stop()
        self._backoff = 0.0

    def connect(self) -> tuple[BlockingConnection, BlockingChannel]:
        try:
            connection = BlockingConnection(pika.URLParameters(self.options.url))
        except pika.exceptions.AMQPError as exc:
            raise ConfigError(
                f"cannot connect to RabbitMQ at {safe_url(self.options.url)} "
                f"({type(exc).__name__}); is it running, and are the credentials right?"
            ) from None
        channel = connection.channel()
        try:
            # Passive: the bridge consumes what operators declared; it creates nothing.
            channel.queue_declare(self.options.queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            connection.close()
            raise ConfigError(
                f"queue {self.options.queue!r} does not exist on "
                f"{safe_url(self.options.url)}; declare it first"
            ) from None
        # The broker hands us at most a batch of unacknowledged messages at a time.
        channel.basic_qos(prefetch_count=self.options.prefetch)
        return connection, channel

    def run(self) -> int:
        configure_logging()  # `stratoq bridge rabbitmq`: JSON lines on stdout
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            connected = False
            while not self.stop.requested:
                try:
                    connection, channel = self.connect()
                except ConfigError as exc:
                    if not connected:
                        raise  # a wrong URL, credentials or queue at start: say so, exit 2
                    self._pause(None, "cannot reconnect to RabbitMQ", type(exc).__name__)
                    continue
                connected = True
                logger.info(
                    "bridge consuming",
                    extra={
                        "broker": safe_url(self.options.url),
                        "queue": self.options.queue,
                        "prefetch": self.options.prefetch,
                        "tenant": self.bridge.tenant,
                    },
                )
                try:
                    self._consume(connection, channel)
                except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
                    # The broker requeues whatever we had not acknowledged: nothing is lost.
                    self._pause(None, "connection to RabbitMQ lost; reconnecting", type(e).__name__)
                    continue
                finally:
                    _close(connection, channel)
                break
            logger.info("bridge stopped", extra=dict(self.bridge.totals))
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _consume(self, connection: BlockingConnection, channel: BlockingChannel) -> None:
        batch: list[tuple[Basic.Deliver, BrokerMessage]] = []
        started = 0.0
        # inactivity_timeout: the generator yields (None, None, None) when idle, so the
        # stop flag and the linger deadline are looked at at least that often.
        for method, props, body in channel.consume(
            self.options.queue, inactivity_timeout=self.options.linger
        ):
            if method is not None and props is not None and body is not None:
                if not batch:
                    started = time.monotonic()
                batch.append((method, self._message(method, props, body)))
            full = len(batch) >= self.options.prefetch
            lingered = bool(batch) and time.monotonic() - started >= self.options.linger
            if batch and (full or lingered or method is None or self.stop.requested):
                self._flush(connection, channel, batch)
                batch = []
            if self.stop.requested:
                return
        # The generator ends when the broker cancels the consumer (queue deleted, node
        # shutting down): consume again through a fresh connection, not exit quietly.
        raise pika.exceptions.ConsumerCancelled("the broker cancelled the consumer")

    def _message(self, method: Basic.Deliver, props: BasicProperties, body: bytes) -> BrokerMessage:
        return BrokerMessage(
            body=body,
            key=rabbitmq_key(self.queue_id, props.message_id, body, props.correlation_id),
            ref=f"{self.queue_id}#{method.delivery_tag}",
        )

    def _flush(
        self,
        connection: BlockingConnection,
        channel: BlockingChannel,
        batch: list[tuple[Basic.Deliver, BrokerMessage]],
    ) -> None:
        last = batch[-1][0].delivery_tag
        assert last is not None  # a Basic.Deliver always carries its tag
        try:
            self.bridge.submit([m for _, m in batch])
        except Exception as exc:
            # Not enqueued (or not known to be): hand the batch back. Whatever part of it
            # was stored is found again by its idempotency keys on redelivery.
            channel.basic_nack(delivery_tag=last, multiple=True, requeue=True)
            self._pause(
                connection,
                f"broker batch of {len(batch)} not enqueued; handed back to the queue",
                type(exc).__name__,
            )
            return
        channel.basic_ack(delivery_tag=last, multiple=True)
        self._backoff = 0.0

    def _pause(self, connection: BlockingConnection | None, why: str, error: str) -> None:
        """Back off (0.5 s doubling to 30 s); a stop request ends the wait early."""
        self._backoff = min(MAX_BACKOFF_SECONDS, max(0.5, self._backoff * 2))
        logger.error(why, extra={"error_type": error, "retry_in_seconds": self._backoff})
        deadline = time.monotonic() + self._backoff
        while not self.stop.requested and (left := deadline - time.monotonic()) > 0:
            if connection is not None and connection.is_open:
                connection.sleep(min(0.2, left))  # keeps heartbeats going meanwhile
            else:
                time.sleep(min(0.2, left))


def _close(connection: BlockingConnection, channel: BlockingChannel) -> None:
    try:
        if channel.is_open:
            channel.cancel()  # requeues what pika buffered but the loop never took
        if connection.is_open:
            connection.close()
    except pika.exceptions.AMQPError:
        pass  # already gone: the broker requeues unacknowledged messages itself
