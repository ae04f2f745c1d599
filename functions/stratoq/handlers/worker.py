"""Lambda entry point for SQS batches: each record goes through `Worker.process`.

Failed records are reported with ReportBatchItemFailures, so only they come back.
A record whose task is held by another worker is given a visibility timeout first,
so it comes back when that worker's lease would have run out, not at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoq.adapters.transport import Delivery
from stratoq.core.clock import now_ms
from stratoq.core.priority import split_key
from stratoq.handlers.edge import entry
from stratoq.observability.logging import stream_handler
from stratoq.services.app import Services
from stratoq.services.handback import Action
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import thread_holder

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())

# Without an invocation context (a local consumer calling in): 15 minutes, Lambda's most.
NO_DEADLINE_MS = 900_000


class NotAcknowledged(Exception):
    """Tells the batch processor to leave this record on the queue."""


class WorkerFunction:
    """The worker function: `(event, context)` for an SQS batch of this process's queues."""

    def __init__(self, services: Services, *, clock: Callable[[], int] = now_ms) -> None:
        self.services = services
        # `clock`: the wall clock, except in eager tests (stratoq.testing), which run
        # this very function with a clock that jumps over retry delays.
        self.worker = services.worker(
            InlineRunner(), time_left_ms=self._time_left_ms, clock=clock, holder=self._holder
        )
        # The invocation being handled, per thread (a local consumer may call from many).
        self._local = threading.local()

    def _time_left_ms(self) -> int:
        ctx: LambdaContext | None = getattr(self._local, "context", None)
        return ctx.get_remaining_time_in_millis() if ctx is not None else NO_DEADLINE_MS

    def _holder(self) -> str:
        # On Lambda, the invocation's request id: what its logs and traces are keyed by.
        ctx: LambdaContext | None = getattr(self._local, "context", None)
        request_id = getattr(ctx, "aws_request_id", None) if ctx is not None else None
        return str(request_id) if request_id else thread_holder()

    def record(self, record: SQSRecord) -> None:
        worker = self.worker
        delivery = Delivery(
            queue_url=worker.transport.url_from_arn(record.event_source_arn),
            message_id=record.message_id,
            receipt_handle=record.receipt_handle,
            body=record.body,
            receive_count=int(record.attributes.approximate_receive_count or 1),
        )
        disposition = worker.process(delivery)
        # Metrics are labelled by logical queue (priorities share its series).
        self.services.metrics.message_handled(
            split_key(worker.back.queue_of(delivery))[0], disposition.status
        )
        if disposition.action is Action.RELEASE:
            worker.transport.change_visibility([(delivery, disposition.delay)])
        if disposition.action is not Action.ACK:
            raise NotAcknowledged(disposition.status)

    def __call__(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        self._local.context = context
        try:
            # A processor per batch: it keeps the batch's records and outcomes, and a
            # local consumer may hand in batches from several threads at once.
            processor = BatchProcessor(
                event_type=EventType.SQS, raise_on_entire_batch_failure=False
            )
            return process_partial_response(  # type: ignore[return-value]
                event=event,
                record_handler=self.record,
                processor=processor,
                context=context,
            )
        finally:
            self._local.context = None


lambda_handler = logger.inject_lambda_context(clear_state=True)(entry(WorkerFunction))
