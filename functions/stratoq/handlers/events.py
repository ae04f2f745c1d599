"""Lambda entry point for the events queue: each record is one event for one webhook
(`stratoq.services.events.Deliverer`). A failed POST is reported with
ReportBatchItemFailures after its visibility timeout is set to the backoff, so the
record comes back then, not at once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from stratoq.handlers.edge import entry
from stratoq.observability.logging import stream_handler
from stratoq.services.app import Services

logger = Logger(service="stratoq", logger_handler=stream_handler())


class NotDelivered(Exception):
    """Tells the batch processor to leave this record on the queue."""


class EventsFunction:
    """The events function: `(event, context)` for an SQS batch of the events queue."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.deliverer = services.deliverer()

    def record(self, record: SQSRecord) -> None:
        receives = int(record.attributes.approximate_receive_count or 1)
        done = self.deliverer.deliver(record.body, receives)
        if not done.done:
            url = self.services.settings.events_queue_url or ""
            self.services.sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=done.retry_in
            )
            raise NotDelivered(done.outcome)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        return process_partial_response(  # type: ignore[return-value]
            event=event, record_handler=self.record, processor=processor, context=context
        )


lambda_handler = logger.inject_lambda_context(clear_state=True)(entry(EventsFunction))
