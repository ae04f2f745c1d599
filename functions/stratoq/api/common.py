"""What every route family shares: who is calling, JSON answers, the payload limit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from pydantic import BaseModel

from stratoq.adapters.keys import manages_every_tenant
from stratoq.core import registry
from stratoq.core.errors import (
    ForbiddenError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnknownTaskNameError,
)
from stratoq.core.models import MAX_PAYLOAD_BYTES, TaskRequest, payload_size

if TYPE_CHECKING:
    from stratoq.services.app import Services


class OneAtATime:
    """Resolves one request at a time per process, and lets a long wait step aside.

    Powertools keeps the request being resolved in class attributes shared by every
    resolver of the process (`BaseRouter.current_event`) and in the resolver's own
    `context` dict: two requests resolved at once (the dev stack's threaded gateway)
    would be validated and scope-checked against each other's body and tenant. On
    Lambda one instance serves one request anyway, and the lock is never contended.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Around one whole resolution."""
        with self._lock:
            self._local.held = True
            try:
                yield
            finally:
                self._local.held = False

    @contextmanager
    def stepped_aside(self, app: APIGatewayRestResolver) -> Iterator[None]:
        """Around a wait that reads no request state (`?wait=`): other requests are
        resolved meanwhile, and this one's state is put back before it goes on."""
        if not getattr(self._local, "held", False):
            yield
            return
        event, context, saved = BaseRouter.current_event, BaseRouter.lambda_context, {**app.context}
        self._local.held = False
        self._lock.release()
        try:
            yield
        finally:
            self._lock.acquire()
            self._local.held = True
            BaseRouter.current_event, BaseRouter.lambda_context = event, context
            app.context.clear()
            app.context.update(saved)


RESOLVING = OneAtATime()


class Caller:
    """The caller of the current request, as the authorizer put it in the request
    context (`tenant`, `scopes`); `caller(scope)` checks the scope and names the tenant."""

    def __init__(self, app: APIGatewayRestResolver, services: Services) -> None:
        self._app = app
        self._services = services

    def __call__(self, scope: str) -> str:
        """The caller's tenant, after checking its key has `scope` (403 otherwise)."""
        authorizer = self._app.current_event.request_context.authorizer
        tenant = authorizer.get("tenant")
        if not tenant:
            raise UnauthorizedError("Unauthorized")
        granted = str(authorizer.get("scopes") or "").split()
        if not (
            "admin" in granted
            or scope in granted
            or (scope == "tasks:read" and "tasks:write" in granted)
        ):
            raise ForbiddenError(f"this API key lacks the {scope!r} scope")
        return str(tenant)

    def scopes(self) -> list[str]:
        """The scopes of the caller's key, as granted (checked by `__call__` first)."""
        authorizer = self._app.current_event.request_context.authorizer
        return str(authorizer.get("scopes") or "").split()

    def is_operator(self, tenant: str) -> bool:
        """Whether `tenant`'s admin keys manage every tenant (the operator's do)."""
        return manages_every_tenant(tenant, self._services.settings.operator_tenant)


def answer(status: int, body: BaseModel | dict[str, Any]) -> Response[str]:
    """A JSON answer: a contract model (or its dump) with `status`."""
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type="application/json", body=json.dumps(data))


def check_payload(request: TaskRequest, field: str = "payload") -> None:
    """413 naming `field` if the request's payload is over the per-task limit."""
    # Enqueuer.build refuses it too; checked here first to name the field in a batch.
    size = payload_size(request.payload)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"{field} is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes",
            field=field,
            detail=f"larger than {MAX_PAYLOAD_BYTES} bytes",
        )


def check_name(request: TaskRequest, services: Services, field: str = "name") -> None:
    """400 naming `field` if the deployment checks task names and none of its tasks is
    called so (a typo, or a task not deployed yet), unless the request allows it."""
    known = services.known_task_names()
    if known is None or request.allow_unknown_name or request.name in known:
        return
    raise UnknownTaskNameError(
        f"{field}: no task named {request.name!r} is registered "
        f"(registered: {', '.join(sorted(known)) or 'none'}); if its workers are deployed "
        "after this producer, send allow_unknown_name: true",
        field=field,
    )


def with_task_defaults(
    request: TaskRequest, services: Services, field: str = "payload"
) -> TaskRequest:
    """`request` checked and completed by its task's definition, where this process has
    loaded the tasks module: a typed task's payload must fit its model (400 naming each
    field under `field`), and the task's options fill the fields the request left out."""
    if services.loaded_task_names() is None:
        return request
    registry.argument(request.name, request.payload, field)
    return registry.apply_options(request, registry.options(request.name))
