"""boto3 clients built from settings: one endpoint setting for moto, LocalStack or AWS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from stratoq.core.errors import BackendUnavailableError, ConfigError
from stratoq.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_cloudformation.client import CloudFormationClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sqs.client import SQSClient

# Standard retry mode retries throttling, 5xx, and dropped or refused connections, with
# jittered exponential backoff, up to 5 retries (6 tries), and stops retrying early when
# most calls fail (its retry quota), so an outage fails fast instead of piling up
# retries. Adaptive mode would also rate-limit the client after throttling, which slows
# every thread of a poller for one hot item; standard fits a shared client better. A
# write retried after a lost answer meets its own earlier success: every conditional
# write recognises that (docs/reliability.md). Enough pooled connections for a poller's
# threads to share one client.
_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=64)

# Error codes that mean "not now" rather than "never": botocore's throttling codes and
# the 5xx codes of DynamoDB and SQS.
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "LimitExceededException",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def client(service: str, settings: Settings) -> Any:
    session = boto3.session.Session()
    creds: dict[str, str] = {}
    if settings.aws_endpoint_url and session.get_credentials() is None:
        # An emulator accepts any credentials; don't make users invent some.
        placeholder = "testing"  # an emulator accepts anything; not a secret
        creds = {"aws_access_key_id": placeholder, "aws_secret_access_key": placeholder}
    return session.client(
        service,  # type: ignore[call-overload]
        region_name=settings.region,
        endpoint_url=settings.aws_endpoint_url,
        config=_CONFIG,
        **creds,
    )


def unavailable(exc: BaseException) -> BackendUnavailableError | None:
    """The core error for an AWS call that failed for now (throttled, a 5xx, no
    connection) after botocore's retries; None for any other exception."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT_CODES or status >= 500:
            operation = getattr(exc, "operation_name", "a call")
            return BackendUnavailableError(
                f"AWS is unavailable for the moment ({operation}: {code or status})"
            )
        return None
    if isinstance(exc, HTTPClientError | BotoConnectionError):
        # Refused, reset or timed-out connections (EndpointConnectionError, ...).
        return BackendUnavailableError(f"AWS is unavailable for the moment ({type(exc).__name__})")
    return None


def dynamodb(settings: Settings) -> DynamoDBClient:
    return client("dynamodb", settings)  # type: ignore[no-any-return]


def sqs(settings: Settings) -> SQSClient:
    return client("sqs", settings)  # type: ignore[no-any-return]


def events(settings: Settings) -> EventBridgeClient:
    return client("events", settings)  # type: ignore[no-any-return]


def apigateway(settings: Settings) -> APIGatewayClient:
    return client("apigateway", settings)  # type: ignore[no-any-return]


def cloudformation(settings: Settings) -> CloudFormationClient:
    return client("cloudformation", settings)  # type: ignore[no-any-return]


def profile_region(profile: str | None = None) -> str | None:
    """The region of an AWS profile (AWS_PROFILE's or the default one), if it names one."""
    return boto3.session.Session(profile_name=profile).region_name


def stack_outputs(settings: Settings, stack: str) -> dict[str, str]:
    """A CloudFormation stack's outputs by key; ConfigError if there is no such stack."""
    try:
        described = cloudformation(settings).describe_stacks(StackName=stack)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
            where = f" at {settings.aws_endpoint_url}" if settings.aws_endpoint_url else ""
            raise ConfigError(
                f"there is no stack {stack!r} in region {settings.region}{where}: "
                "pass the name it was deployed with (--stack) and its --region"
            ) from None
        raise
    return {
        o["OutputKey"]: o["OutputValue"]
        for o in described["Stacks"][0].get("Outputs", [])
        if "OutputKey" in o and "OutputValue" in o
    }
