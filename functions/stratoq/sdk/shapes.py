"""How the SDK shapes what it sends and what it returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from stratoq.api.contract import TaskRequest


def time_text(value: datetime | str | None) -> str | None:
    """A time filter as the API takes it (RFC 3339 text)."""
    return value.isoformat() if isinstance(value, datetime) else value


def dump(answer: BaseModel) -> dict[str, Any]:
    """A parsed answer as the JSON dict the methods that predate the models return."""
    return answer.model_dump(mode="json")


def body_of(request: TaskRequest) -> dict[str, Any]:
    """A task request as the API takes it."""
    # Fields the caller left unset stay out, so the API can tell them from explicit ones.
    body = request.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    if not body.get("unique"):
        body.pop("unique", None)  # only when asked for: older APIs do not know the field
    return body
