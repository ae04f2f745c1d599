"""Errors over HTTP, both ways: the API's status for each error, the SDK's error for each status.

`ANSWERS` is the one table. The API looks an error up along its class's MRO (the most
specific class listed wins) and answers `{"message": ..., "errors": [...]}` with its
status; errors not listed are bugs, answered 500 by the API's catch-all. The SDK reads
the table backwards (`error_class`): for an error answer it raises the `ApiError`
subclass that is also the core class the API answers that status for.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from stratoq.api.contract import ErrorBody, ErrorDetail
from stratoq.core.errors import (
    ApiError,
    AuthError,
    BackendUnavailableError,
    Conflict,
    EnqueueError,
    ExpressionError,
    ForbiddenError,
    InvalidPayloadError,
    InvalidRequest,
    InvalidRequestError,
    InvalidStateError,
    NotFound,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailable,
    StratoqError,
    UnauthorizedError,
    UnknownQueueError,
    UnknownTaskNameError,
)


class Answer(NamedTuple):
    """How the API answers an error class."""

    status: int
    # The field named in `errors[]` unless the error names its own (None: no entry).
    field: str | None = None
    # The body's `message`; `{}` is the error's own message.
    message: str = "{}"


ANSWERS: dict[type[StratoqError], Answer] = {
    UnauthorizedError: Answer(401),
    ForbiddenError: Answer(403),
    NotFoundError: Answer(404),
    InvalidStateError: Answer(409),
    InvalidRequestError: Answer(400),
    PayloadTooLargeError: Answer(413, "payload"),
    UnknownQueueError: Answer(422, "queue"),
    UnknownTaskNameError: Answer(400, "name"),
    ExpressionError: Answer(422, "expression", "expression: {}"),
    BackendUnavailableError: Answer(503, message="{}; try again shortly"),
    EnqueueError: Answer(503, message="{}; nothing was enqueued, try again"),
}

# What the SDK raises for the statuses above, each an ApiError and a core class.
SDK_ERRORS: tuple[type[ApiError], ...] = (
    AuthError,
    NotFound,
    Conflict,
    InvalidRequest,
    ServiceUnavailable,
)


def answer_of(error: StratoqError) -> Answer | None:
    """The table's entry for `error`'s class or its nearest listed base (None: unlisted)."""
    for cls in type(error).__mro__:
        found = ANSWERS.get(cls)
        if found is not None:
            return found
    return None


def error_headers(error: StratoqError) -> dict[str, str]:
    """Headers an error answer carries: Retry-After for a backend outage."""
    if isinstance(error, BackendUnavailableError):
        return {"Retry-After": str(error.retry_after)}
    return {}


def error_body(message: str | None, errors: list[ErrorDetail] | None = None) -> dict[str, Any]:
    """An error answer's JSON body: `{"message": ..., "errors": [...]}`."""
    return ErrorBody(message=message, errors=errors or []).model_dump(mode="json")


def http_error(error: StratoqError) -> tuple[int, dict[str, Any]] | None:
    """The status and body the API answers `error` with (None: not an error it answers)."""
    answer = answer_of(error)
    if answer is None:
        return None
    text = str(error)
    field = error.field or answer.field
    details = [ErrorDetail(field=field, message=error.detail or text)] if field else []
    if isinstance(error, InvalidPayloadError):
        details = [ErrorDetail(field=f, message=m) for f, m in error.problems]
    return answer.status, error_body(answer.message.format(text), details)


def _core_class(sdk_error: type[ApiError]) -> type[StratoqError]:
    return next(b for b in sdk_error.__bases__ if b is not ApiError)


def error_class(status: int) -> type[ApiError]:
    """The class the SDK raises for an error answer with `status`: the one whose core
    class is a base of an error the API answers with that status (ApiError for others,
    such as API Gateway's 429 and 5xx)."""
    answered = [cls for cls, answer in ANSWERS.items() if answer.status == status]
    for sdk_error in SDK_ERRORS:
        if any(issubclass(cls, _core_class(sdk_error)) for cls in answered):
            return sdk_error
    return ApiError
