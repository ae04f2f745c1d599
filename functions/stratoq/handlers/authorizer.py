"""Lambda REQUEST authorizer: `x-api-key` -> tenant and scopes, or 401.

Unknown, revoked or missing keys raise "Unauthorized", which API Gateway answers with
401. Scopes are checked per route by the API function (403 names the missing scope).
`Authorizer(services)` is the function; `lambda_handler` builds one per process.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from stratoq.adapters.keys import usage_identifier
from stratoq.handlers.edge import entry
from stratoq.observability.logging import stream_handler
from stratoq.services.app import Services

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger.
logger = Logger(service="stratoq", logger_handler=stream_handler())


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


class Authorizer:
    """The authorizer function: a REQUEST event in, an IAM policy and context out."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        record = self.services.keys.lookup(_header(event, "x-api-key"))
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
        usage_plan = self.services.settings.usage_plan
        if usage_plan:
            # The API meters and throttles this request under the key's usage plan twin.
            answer["usageIdentifierKey"] = usage_identifier(usage_plan, record.key_id)
        return answer


lambda_handler = entry(Authorizer)
