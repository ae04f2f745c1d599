"""Typed payloads: a handler whose first parameter is a pydantic model gets its payload
validated into that model (by the SDK at enqueue, the API at enqueue, the worker at run
time), and a model a handler returns is stored as its JSON dump. Pure: no I/O.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from stratoq.core.errors import InvalidPayloadError

logger = logging.getLogger(__name__)


def payload_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The `BaseModel` subclass `fn`'s first parameter is annotated with, else None.

    String annotations (`from __future__ import annotations`) are resolved in the
    function's module; one that cannot be resolved leaves the handler untyped (warned).
    """
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, SyntaxError, TypeError) as exc:
        logger.warning(
            "cannot resolve the handler's annotations; its payload is not validated",
            extra={"handler": getattr(fn, "__qualname__", repr(fn)), "reason": str(exc)},
        )
        return None
    except ValueError:  # no signature (some builtins): untyped
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = next((p for p in signature.parameters.values() if p.kind in positional), None)
    if first is None:
        return None
    annotation = first.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def validate_payload(model: type[BaseModel], payload: Any, field: str = "payload") -> BaseModel:
    """`payload` (JSON, or a model instance) as an instance of `model`.

    Raises `InvalidPayloadError` naming each field at fault from `field` down
    (`payload.b`, `payload.items.0`).
    """
    if isinstance(payload, BaseModel) and not isinstance(payload, model):
        payload = payload.model_dump(mode="json", by_alias=True)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        problems = [
            (".".join([field, *(str(p) for p in err["loc"])]), err["msg"]) for err in exc.errors()
        ]
        summary = "; ".join(f"{f}: {m}" for f, m in problems)
        raise InvalidPayloadError(
            f"invalid payload for {model.__name__}: {summary}", problems
        ) from None


def to_json(model: BaseModel) -> Any:
    """A model as the JSON value that travels and is stored (by alias: what validates back)."""
    return model.model_dump(mode="json", by_alias=True)


def result_value(result: Any) -> Any:
    """A handler's result as stored: a model becomes its JSON dump, the rest is as is."""
    return to_json(result) if isinstance(result, BaseModel) else result
