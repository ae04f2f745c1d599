"""Lambda REQUEST authorizer: `x-api-key` -> tenant and scopes, or 401.

Unknown, revoked or missing keys raise "Unauthorized", which API Gateway answers with
401. Scopes are checked per route by the API function (403 names the missing scope).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoq.adapters import aws
from stratoq.adapters.keys import KeyStore, usage_identifier
from stratoq.core.settings import Settings
from stratoq.observability.logging import stream_handler

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())


class _Deps:
    keys: KeyStore | None = None
    usage_plan: str | None = None


def _keys() -> KeyStore:
    if _Deps.keys is None:
        settings = Settings.from_env()
        _Deps.keys = KeyStore(aws.dynamodb(settings), settings.keys_table)
        _Deps.usage_plan = settings.usage_plan
    return _Deps.keys


def reset() -> None:
    _Deps.keys = None
    _Deps.usage_plan = None


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    record = _keys().lookup(_header(event, "x-api-key"))
    if record is None:
        logger.info("rejected a request with an unknown or revoked key")
        raise Exception("Unauthorized")
    # Allow the whole API: scopes are enforced per route, and a cached policy for one
    # method ARN must not lock the key out of the others.
    arn = event["methodArn"].split("/", 1)[0] + "/*"
    answer: dict[str, Any] = {
        "principalId": record.key_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": arn}],
        },
        "context": {
            "tenant": record.tenant,
            "scopes": " ".join(record.scopes),
            "key_id": record.key_id,
        },
    }
    if _Deps.usage_plan:
        # The API meters and throttles this request under the key's usage plan twin.
        answer["usageIdentifierKey"] = usage_identifier(_Deps.usage_plan, record.key_id)
    return answer
