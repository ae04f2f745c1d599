"""An AWS call that failed for now (after botocore's retries) is the core's
BackendUnavailableError, which the API answers 503 with Retry-After; other failures
stay what they are (issue 23, item 4)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from stratoq.adapters.aws import unavailable
from stratoq.api.errors import error_headers, http_error
from stratoq.core.errors import BackendUnavailableError, EnqueueError


def client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutItem")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ProvisionedThroughputExceededException", 400),
        client_error("ThrottlingException", 400),
        client_error("RequestThrottled", 400),
        client_error("InternalServerError", 500),
        client_error("ServiceUnavailable", 503),
        client_error("Whatever", 502),
        ConnectionClosedError(endpoint_url="http://x"),
        EndpointConnectionError(endpoint_url="http://x"),
    ],
)
def test_transient_aws_failures_are_a_503_with_retry_after(exc: Exception) -> None:
    outage = unavailable(exc)
    assert isinstance(outage, BackendUnavailableError)
    status, body = http_error(outage) or (0, {})
    assert status == 503
    assert body["message"].startswith("AWS is unavailable for the moment (")
    assert body["message"].endswith("; try again shortly")
    assert error_headers(outage) == {"Retry-After": "5"}


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ConditionalCheckFailedException", 400),
        client_error("ValidationException", 400),
        client_error("ResourceNotFoundException", 400),
        ValueError("a bug"),
    ],
)
def test_other_failures_are_not_an_outage(exc: Exception) -> None:
    assert unavailable(exc) is None


def test_a_failed_send_is_an_outage_too() -> None:
    assert error_headers(EnqueueError("SQS said no")) == {"Retry-After": "5"}
