"""Routes of `/v1/webhooks`: a tenant's webhook subscriptions and their dead letters
(admin, tenant scoped: a tenant sees and deletes its own only)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from stratoq.api.common import Caller, answer
from stratoq.api.contract import responses
from stratoq.api.webhook_models import (
    WEBHOOK_ID,
    CreatedWebhook,
    DeletedWebhook,
    Webhook,
    WebhookFailures,
    WebhookList,
    WebhookRequest,
)
from stratoq.core.clock import now_ms
from stratoq.core.errors import InvalidRequestError
from stratoq.core.events import Subscription, check_event_types, check_url

if TYPE_CHECKING:
    from stratoq.services.app import Services


def _public(sub: Subscription) -> Webhook:
    return Webhook(
        id=sub.id, url=sub.url, events=sorted(sub.events), created_at_ms=sub.created_at_ms
    )


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the webhook routes to `app`, answering from `services`."""

    @app.post(
        "/v1/webhooks",
        responses=responses({201: ("created; the secret shown once", CreatedWebhook)}, 400),
    )
    def create_webhook(request: WebhookRequest) -> Response[str]:
        """Subscribe a webhook to task events (admin). Its signing secret is in this
        answer only (docs/webhooks.md: verifying a delivery)."""
        tenant = caller("admin")
        problem = check_url(request.url, services.settings.webhook_allow_local_http)
        if problem is not None:
            raise InvalidRequestError(f"url {problem}", field="url", detail=problem)
        problem = check_event_types(request.events)
        if problem is not None:
            raise InvalidRequestError(f"events: {problem}", field="events", detail=problem)
        sub = Subscription(
            id="wh_" + secrets.token_urlsafe(12),
            tenant=tenant,
            url=request.url,
            events=frozenset(request.events),
            secret=request.secret or "whsec_" + secrets.token_urlsafe(24),
            created_at_ms=now_ms(),
        )
        services.webhooks.create(sub)
        created = CreatedWebhook(**_public(sub).model_dump(), secret=sub.secret)
        return answer(201, created)

    @app.get(
        "/v1/webhooks", responses=responses({200: ("the webhooks, without secrets", WebhookList)})
    )
    def list_webhooks() -> Response[str]:
        """The caller's tenant's webhooks (admin)."""
        tenant = caller("admin")
        subs = services.webhooks.of(tenant, consistent=True)
        return answer(200, WebhookList(webhooks=[_public(s) for s in subs]))

    @app.delete(
        "/v1/webhooks/<webhook_id>", responses=responses({200: ("deleted", DeletedWebhook)}, 404)
    )
    def delete_webhook(webhook_id: Annotated[str, Path(pattern=WEBHOOK_ID)]) -> Response[str]:
        """Delete a webhook and its dead letters (admin). Events already queued for it
        are dropped."""
        tenant = caller("admin")
        services.webhooks.delete(tenant, webhook_id)
        return answer(200, DeletedWebhook(id=webhook_id, deleted=True))

    @app.get(
        "/v1/webhooks/<webhook_id>/failures",
        responses=responses({200: ("dead-letter records", WebhookFailures)}, 404),
    )
    def webhook_failures(webhook_id: Annotated[str, Path(pattern=WEBHOOK_ID)]) -> Response[str]:
        """Events this webhook never accepted: every delivery attempt failed (admin)."""
        tenant = caller("admin")
        records, dropped = services.webhooks.failures(tenant, webhook_id)
        return answer(200, WebhookFailures(failures=records, dropped=dropped))
