"""The HTTP contract of `/v1/webhooks` (pydantic models, no Powertools): the API's
routes (stratoq.api.webhooks) and the SDK (stratoq.sdk.webhooks) share it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from stratoq.core.events import EVENT_TYPES

WEBHOOK_ID = r"^wh_[A-Za-z0-9_-]{1,40}$"


class WebhookRequest(BaseModel):
    """A webhook to create: where to POST which task events."""

    url: str = Field(max_length=2048, description="https:// (http://127.0.0.1 on the dev stack)")
    events: list[str] = Field(
        default_factory=lambda: list(EVENT_TYPES),
        max_length=len(EVENT_TYPES),
        description=f"event types: {', '.join(EVENT_TYPES)} (all by default)",
    )
    secret: str | None = Field(
        default=None,
        min_length=16,
        max_length=256,
        description="the signing secret; generated when left out",
    )


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str]
    created_at_ms: int


class CreatedWebhook(Webhook):
    secret: str = Field(description="shown in this answer only")


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class DeletedWebhook(BaseModel):
    id: str
    deleted: bool


class WebhookFailures(BaseModel):
    """Events whose last delivery attempt failed, oldest first; `dropped`: not kept."""

    failures: list[dict[str, Any]]
    dropped: int
