"""The dev stack's webhook deliverer: the events function's work in a thread.

It receives from the events queue as the function's event source mapping would, hands
each message to the same `Deliverer`, deletes what is done and sets the visibility
timeout of what must be retried to its backoff, as the function does.
"""

from __future__ import annotations

import logging
import threading

from stratoq.services.app import Services

logger = logging.getLogger(__name__)


class LocalDeliverer:
    """`run()` until `stop()`: deliver the events queue's messages."""

    def __init__(self, services: Services, wait_seconds: int = 1) -> None:
        self.services = services
        self.deliverer = services.deliverer()
        self.wait_seconds = wait_seconds
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        url = self.services.settings.events_queue_url
        if not url:
            return
        sqs = self.services.sqs
        while not self._stop.is_set():
            try:
                out = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=self.wait_seconds,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
                for m in out.get("Messages", []):
                    receives = int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
                    done = self.deliverer.deliver(m["Body"], receives)
                    if done.done:
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                    else:
                        sqs.change_message_visibility(
                            QueueUrl=url,
                            ReceiptHandle=m["ReceiptHandle"],
                            VisibilityTimeout=done.retry_in,
                        )
            except Exception:
                # The message comes back after its visibility timeout; keep going.
                logger.exception("delivering webhook events failed")
                self._stop.wait(1)
