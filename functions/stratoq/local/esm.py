"""A local stand-in for Lambda's SQS event source mapping.

It receives batches like the ESM does, calls the same Lambda handler with the same
event shape, and deletes exactly the records the handler did not report as failures.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from stratoq.adapters.transport import SqsTransport

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


class FakeLambdaContext:
    """The parts of LambdaContext that stratoq and Powertools read."""

    def __init__(self, timeout_s: int, function_name: str = "stratoq-worker") -> None:
        self._deadline = time.monotonic() + timeout_s
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_event(queue_arn: str, region: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda builds from received SQS messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                # The checksum SQS itself puts in the event, not a security use.
                "md5OfBody": hashlib.md5(m["Body"].encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class EventSourceMapping:
    """Feeds one queue to a Lambda handler in batches, honouring partial batch failures."""

    def __init__(
        self,
        sqs: Any,
        transport: SqsTransport,
        queue: str,
        handler: LambdaHandler,
        *,
        region: str = "us-east-1",
        batch_size: int = 10,
        function_timeout_s: int = 900,
        wait_seconds: int = 1,
    ) -> None:
        self._sqs = sqs
        self._url = transport.url(queue)
        self._arn = sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._handler = handler
        self._region = region
        self._batch = batch_size
        self._timeout = function_timeout_s
        self._wait = wait_seconds
        self._stop = threading.Event()

    def poll_once(self) -> int:
        """Receive one batch and invoke the handler with it; returns the batch size."""
        out = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=self._batch,
            WaitTimeSeconds=self._wait,
            MessageSystemAttributeNames=["All"],
        )
        messages = out.get("Messages", [])
        if not messages:
            return 0
        response = self._handler(
            sqs_event(self._arn, self._region, messages), FakeLambdaContext(self._timeout)
        )
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                ],
            )
        return len(messages)

    def run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
