"""One error hierarchy over HTTP: the API's statuses and bodies, the SDK's classes.

The API function runs in-process on services that are never reached: every request
here is answered before a route touches a store (body checks, validation, scopes).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import stratoq
from stratoq.api.app import ApiFunction
from stratoq.api.errors import ANSWERS, error_class, http_error
from stratoq.core import errors
from stratoq.core.settings import Settings
from stratoq.sdk import client
from stratoq.services.app import Services


@pytest.fixture(scope="module")
def api() -> ApiFunction:
    return ApiFunction(Services(Settings()))


def call(
    api: ApiFunction,
    method: str,
    path: str,
    body: str | None = None,
    scopes: str | None = "tasks:read",
) -> tuple[int, Any]:
    context: dict[str, Any] = {"requestId": "r"}
    if scopes is not None:
        context["authorizer"] = {"tenant": "acme", "scopes": scopes}
    event = {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "text/plain"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "requestContext": context,
        "body": body,
        "isBase64Encoded": False,
    }
    out = api(event, None)
    return out["statusCode"], json.loads(out["body"])


def test_every_status_the_api_answered_before() -> None:
    assert {cls: a.status for cls, a in ANSWERS.items()} == {
        errors.UnauthorizedError: 401,
        errors.ForbiddenError: 403,
        errors.NotFoundError: 404,
        errors.InvalidStateError: 409,
        errors.InvalidRequestError: 400,
        errors.PayloadTooLargeError: 413,
        errors.UnknownQueueError: 422,
        errors.UnknownTaskNameError: 400,
        errors.ExpressionError: 422,
        errors.BackendUnavailableError: 503,
        errors.EnqueueError: 503,
    }


@pytest.fixture(scope="module")
def checking_api() -> ApiFunction:
    settings = Settings(check_task_names=True, tasks_module="tests.support.tasks")
    return ApiFunction(Services(settings))


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/tasks", {"name": "reprot"}, "name"),
        ("/v1/tasks/batch", {"tasks": [{"name": "echo"}, {"name": "reprot"}]}, "tasks[1].name"),
    ],
)
def test_a_name_no_task_has_is_a_400_naming_it_where_names_are_checked(
    checking_api: ApiFunction, path: str, body: dict[str, Any], field: str
) -> None:
    status, answer = call(checking_api, "POST", path, json.dumps(body), "tasks:write")
    assert status == 400
    assert answer["errors"][0]["field"] == field
    assert "'reprot'" in answer["message"] and "echo" in answer["message"]
    assert "allow_unknown_name" in answer["message"]


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (errors.TaskNotFoundError("no task t1"), 404, {"message": "no task t1", "errors": []}),
        (errors.NoDeadLetterQueueError("no dlq"), 404, {"message": "no dlq", "errors": []}),
        (
            errors.InvalidStateError("it is running"),
            409,
            {"message": "it is running", "errors": []},
        ),
        (
            errors.ExpressionError("bad field"),
            422,
            {
                "message": "expression: bad field",
                "errors": [{"field": "expression", "message": "bad field"}],
            },
        ),
        (
            errors.UnknownQueueError("unknown queue 'x'"),
            422,
            {
                "message": "unknown queue 'x'",
                "errors": [{"field": "queue", "message": "unknown queue 'x'"}],
            },
        ),
        (
            errors.PayloadTooLargeError("too big"),
            413,
            {"message": "too big", "errors": [{"field": "payload", "message": "too big"}]},
        ),
        (
            errors.PayloadTooLargeError(
                "tasks[3].payload is big", field="tasks[3].payload", detail="larger"
            ),
            413,
            {
                "message": "tasks[3].payload is big",
                "errors": [{"field": "tasks[3].payload", "message": "larger"}],
            },
        ),
        (errors.InvalidRequestError("no"), 400, {"message": "no", "errors": []}),
        (
            errors.EnqueueError("SQS said no"),
            503,
            {"message": "SQS said no; nothing was enqueued, try again", "errors": []},
        ),
    ],
)
def test_each_error_is_answered_from_the_table(
    error: errors.StratoqError, status: int, body: dict[str, Any]
) -> None:
    assert http_error(error) == (status, body)


def test_errors_that_are_bugs_are_not_in_the_table() -> None:
    assert http_error(errors.ConfigError("STRATOQ_X is missing")) is None
    assert http_error(errors.DecryptionError("tampered")) is None


@pytest.mark.parametrize(
    ("status", "cls", "core"),
    [
        (401, errors.AuthError, errors.AccessDeniedError),
        (403, errors.AuthError, errors.AccessDeniedError),
        (404, errors.NotFound, errors.NotFoundError),
        (409, errors.Conflict, errors.InvalidStateError),
        (400, errors.InvalidRequest, errors.InvalidRequestError),
        (413, errors.InvalidRequest, errors.InvalidRequestError),
        (422, errors.InvalidRequest, errors.InvalidRequestError),
        (429, errors.ApiError, errors.StratoqError),
        (503, errors.ServiceUnavailable, errors.BackendUnavailableError),
        (502, errors.ApiError, errors.StratoqError),
    ],
)
def test_the_sdk_raises_the_core_class_of_each_status(
    status: int, cls: type[errors.ApiError], core: type[errors.StratoqError]
) -> None:
    assert error_class(status) is cls
    raised = cls(status, "why", [{"field": "name", "message": "missing"}])
    assert isinstance(raised, core)
    assert isinstance(raised, errors.ApiError)
    assert (raised.status, raised.message, str(raised)) == (status, "why", f"HTTP {status}: why")


def test_the_sdk_errors_are_importable_where_the_docs_say() -> None:
    assert client.ApiError is errors.ApiError
    assert client.NotFound is errors.NotFound
    assert client.AuthError is errors.AuthError
    assert client.Conflict is errors.Conflict
    assert client.WaitTimeout is errors.WaitTimeout
    assert issubclass(client.WaitTimeout, TimeoutError)
    # What the README promises: `except stratoq.NotFoundError` catches the SDK's 404.
    assert issubclass(client.NotFound, stratoq.NotFoundError)


def test_bodies_refused_before_routing(api: ApiFunction) -> None:
    status, body = call(api, "POST", "/v1/tasks", "x" * (1024 * 1024 + 1), "tasks:write")
    assert (status, body["errors"]) == (413, [])
    assert body["message"] == "request body is over 1048576 bytes"
    status, body = call(api, "POST", "/v1/tasks", "{not json", "tasks:write")
    assert (status, body) == (400, {"message": "request body is not valid JSON", "errors": []})


def test_validation_names_the_field(api: ApiFunction) -> None:
    status, body = call(api, "POST", "/v1/tasks", json.dumps({"name": "x", "bad": 1}), "admin")
    assert status == 422
    assert [e["field"] for e in body["errors"]] == ["bad"]
    assert body["message"].startswith("invalid request: bad: ")


def test_scopes_and_identity(api: ApiFunction) -> None:
    status, body = call(api, "POST", "/v1/tasks", json.dumps({"name": "x"}), "tasks:read")
    assert (status, body) == (
        403,
        {"message": "this API key lacks the 'tasks:write' scope", "errors": []},
    )
    status, body = call(api, "GET", "/v1/tasks", scopes=None)
    assert (status, body) == (401, {"message": "Unauthorized", "errors": []})
    status, body = call(api, "GET", "/v1/nothing")
    assert (status, body) == (404, {"message": "no route GET /v1/nothing", "errors": []})
