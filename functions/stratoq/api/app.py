"""The HTTP API (API Gateway REST proxy integration), on Powertools' event handler.

`ApiFunction(services)` is the API as a Lambda function sees it, `(event, context) ->
answer`: the Lambda entry (`stratoq.handlers.api`) builds one per process from its
environment, the dev stack and tests build theirs from their own `Services`. Routes,
one module per family (tasks, queues, pauses, keys, schedules, workflows), parse and
validate with the contract's models (`stratoq.api.contract`), check the caller's scope,
call the services and shape the answer. The authorizer has already turned `x-api-key`
into a tenant and scopes in `requestContext.authorizer`. Errors are answered from one table
(`stratoq.api.errors`). `/console` serves the web console's static files
(`stratoq.api.console`), public as `/health` is.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

from stratoq.adapters import aws
from stratoq.api import (
    console,
    keys,
    limits,
    pauses,
    queues,
    schedules,
    tasks,
    webhooks,
    workflows,
)
from stratoq.api.common import RESOLVING, Caller, answer
from stratoq.api.contract import ErrorDetail, Health, OpenApiDocument, responses
from stratoq.api.errors import error_body, error_headers, http_error
from stratoq.core.errors import StratoqError
from stratoq.core.version import __version__
from stratoq.observability import tracing

if TYPE_CHECKING:
    from stratoq.services.app import Services

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # a batch of 100 small tasks fits; API Gateway allows 10 MB


def build_resolver(services: Services) -> APIGatewayRestResolver:
    """A Powertools resolver with every route of the API, answering from `services`.

    Routes only keep `services`: nothing is read from it until a request comes.
    """
    app = APIGatewayRestResolver(enable_validation=True)
    app.configure_openapi(
        title="stratoq",
        version=__version__,
        summary="Serverless task queue: enqueue tasks, watch them run.",
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
        security=[{"apiKey": []}],
    )
    caller = Caller(app, services)

    @app.get("/health", security=[], responses=responses({200: ("up", Health)}, public=True))
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/v1/openapi.json", responses=responses({200: ("this spec", OpenApiDocument)}))
    def openapi() -> Response[str]:
        caller("tasks:read")
        return Response(200, "application/json", app.get_openapi_json_schema())

    # Registration order is the order of the OpenAPI document's paths.
    for family in (tasks, queues, pauses, limits, keys, schedules, workflows, webhooks):
        family.register(app, services, caller)
    console.register(app)
    _answer_errors(app)
    return app


def _answer_errors(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            if err.get("type") == "json_invalid":
                return answer(400, error_body("request body is not valid JSON"))
            field = ".".join(loc) or "body"
            errors.append(ErrorDetail(field=field, message=err.get("msg", "invalid")))
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return answer(422, error_body(f"invalid request: {summary}", errors))

    @app.exception_handler(StratoqError)
    def _refused(exc: StratoqError) -> Response[str]:
        return _error_answer(exc)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        outage = aws.unavailable(exc)
        if outage is not None:
            # AWS refused even after retries: a 503 to try again, not a bug's 500.
            logger.warning("AWS unavailable", extra={"error": str(exc)})
            return _error_answer(outage)
        return _internal_error(exc)

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        event = app.current_event
        return answer(404, error_body(f"no route {event.http_method} {event.path}"))


class ApiFunction:
    """The API function: API Gateway proxy events in, proxy answers out."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.resolver = build_resolver(services)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = event.get("body") or ""
        if len(body.encode() if isinstance(body, str) else body) > MAX_BODY_BYTES:
            return _error(413, f"request body is over {MAX_BODY_BYTES} bytes")
        if event.get("isBase64Encoded") and not _utf8(body):
            # API Gateway base64-encodes bodies that are not text; JSON is UTF-8 text.
            return _error(400, "request body is not valid JSON")
        # The API speaks only JSON: parse every body as JSON whatever Content-Type says
        # (curl -d sends form encoding), so a bad body gets a JSON error naming the problem.
        for headers in (event.get("headers"), event.get("multiValueHeaders")):
            if headers:
                for name in [k for k in headers if k.lower() == "content-type"]:
                    del headers[name]
        if event.get("headers") is not None:
            event["headers"]["content-type"] = "application/json"
        if event.get("multiValueHeaders") is not None:
            event["multiValueHeaders"]["content-type"] = ["application/json"]
        # One request at a time: Powertools' request state is shared (`OneAtATime`).
        # A caller's `traceparent` header: its trace goes on into the enqueue and the task.
        with RESOLVING.held(), tracing.extracted(event.get("headers")):
            return self.resolver.resolve(event, context)


def _error_answer(exc: StratoqError) -> Response[str]:
    """The table's answer for `exc` (api/errors.py), headers included; 500 if unlisted."""
    mapped = http_error(exc)
    if mapped is None:
        return _internal_error(exc)
    out = answer(*mapped)
    out.headers.update(error_headers(exc))
    return out


def _internal_error(exc: Exception) -> Response[str]:
    logger.exception("unhandled error", extra={"error_type": type(exc).__name__})
    return answer(500, error_body("internal error"))


def _error(status: int, message: str) -> dict[str, Any]:
    """A proxy answer for a request refused before routing."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(error_body(message)),
    }


def _utf8(body: str | bytes) -> bool:
    """Whether a base64-encoded body decodes to UTF-8 text."""
    try:
        base64.b64decode(body, validate=True).decode()
    except (binascii.Error, ValueError):
        return False
    return True
