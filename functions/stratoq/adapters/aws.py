"""boto3 clients built from settings: one endpoint setting for moto, LocalStack or AWS."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from stratoq.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_apigateway.client import APIGatewayClient
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sqs.client import SQSClient

# Standard retry mode retries throttling and 5xx with backoff; enough pooled connections
# for a poller's threads to share one client.
_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=64)


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


def dynamodb(settings: Settings) -> DynamoDBClient:
    return client("dynamodb", settings)  # type: ignore[no-any-return]


def sqs(settings: Settings) -> SQSClient:
    return client("sqs", settings)  # type: ignore[no-any-return]


def events(settings: Settings) -> EventBridgeClient:
    return client("events", settings)  # type: ignore[no-any-return]


def apigateway(settings: Settings) -> APIGatewayClient:
    return client("apigateway", settings)  # type: ignore[no-any-return]
