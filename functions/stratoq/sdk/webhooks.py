"""The SDK's webhook methods (`Client.create_webhook`, ...), mixed into `Client`.

from stratoq import Client
hook = Client().create_webhook("https://example.com/stratoq", events=["failed"])
print(hook["secret"])  # shown once: keep it to verify deliveries (stratoq.webhooks)
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from stratoq.api.webhook_models import (
    CreatedWebhook,
    DeletedWebhook,
    WebhookFailures,
    WebhookList,
    WebhookRequest,
)


class WebhookMethods:
    """Webhook routes of the API; `Client` provides `_call`."""

    def _call(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        raise NotImplementedError

    def create_webhook(
        self, url: str, events: Sequence[str] | None = None, secret: str | None = None
    ) -> dict[str, Any]:
        """Subscribe `url` to task events (all types by default; needs admin). The
        answer's `secret` is shown only here; raises InvalidRequest naming `url` (not
        https) or `events` (an unknown type)."""
        request = WebhookRequest.model_construct(url=url, secret=secret)
        body = request.model_dump(mode="json", exclude_none=True)
        if events is not None:
            body["events"] = list(events)
        created = CreatedWebhook.model_validate(self._call("POST", "/v1/webhooks", body))
        return created.model_dump(mode="json")

    def list_webhooks(self) -> builtins.list[dict[str, Any]]:
        """The tenant's webhooks, without their secrets."""
        answer = WebhookList.model_validate(self._call("GET", "/v1/webhooks"))
        return [w.model_dump(mode="json") for w in answer.webhooks]

    def delete_webhook(self, webhook_id: str) -> dict[str, Any]:
        answer = self._call("DELETE", f"/v1/webhooks/{webhook_id}")
        return DeletedWebhook.model_validate(answer).model_dump(mode="json")

    def webhook_failures(self, webhook_id: str) -> dict[str, Any]:
        """Dead-letter records: events whose every delivery attempt failed."""
        answer = self._call("GET", f"/v1/webhooks/{webhook_id}/failures")
        return WebhookFailures.model_validate(answer).model_dump(mode="json")
