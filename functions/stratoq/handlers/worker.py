"""Lambda entry point for SQS batches: each record goes through `Worker.process`.

Failed records are reported with ReportBatchItemFailures, so only they come back.
A record whose task is held by another worker is given a visibility timeout first,
so it comes back when that worker's lease would have run out, not at once.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoq.adapters import aws
from stratoq.adapters.crypto import cipher_for
from stratoq.adapters.store import TaskStore
from stratoq.adapters.transport import Delivery, SqsTransport
from stratoq.core import registry
from stratoq.core.priority import split_key
from stratoq.core.settings import Settings
from stratoq.observability import metrics
from stratoq.observability.logging import stream_handler
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Action, Worker

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class NotAcknowledged(Exception):
    """Tells the batch processor to leave this record on the queue."""


class _State:
    worker: Worker | None = None
    context: LambdaContext | None = None


def _worker() -> Worker:
    if _State.worker is None:
        settings = Settings.from_env()
        registry.load(settings.tasks_module)
        store = TaskStore(
            aws.dynamodb(settings),
            settings.tasks_table,
            retention_days=settings.retention_days,
            cipher=cipher_for(settings),
        )
        _State.worker = Worker(
            store,
            SqsTransport(aws.sqs(settings), settings.queues),
            InlineRunner(),
            time_left_ms=_time_left_ms,
        )
    return _State.worker


def _time_left_ms() -> int:
    ctx = _State.context
    return ctx.get_remaining_time_in_millis() if ctx is not None else 900_000


def record_handler(record: SQSRecord) -> None:
    worker = _worker()
    delivery = Delivery(
        queue_url=worker.transport.url_from_arn(record.event_source_arn),
        message_id=record.message_id,
        receipt_handle=record.receipt_handle,
        body=record.body,
        receive_count=int(record.attributes.approximate_receive_count or 1),
    )
    disposition = worker.process(delivery)
    # Metrics are labelled by logical queue (priorities share its series).
    metrics.message_handled(split_key(worker._queue_of(delivery))[0], disposition.status)
    if disposition.action is Action.RELEASE:
        worker.transport.change_visibility([(delivery, disposition.delay)])
    if disposition.action is not Action.ACK:
        raise NotAcknowledged(disposition.status)


@logger.inject_lambda_context(clear_state=True)
@metrics.flush_after
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _State.context = context
    return process_partial_response(  # type: ignore[return-value]
        event=event, record_handler=record_handler, processor=processor, context=context
    )
