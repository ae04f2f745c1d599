"""Routes of `/v1/keys`: create, list and revoke API keys (admin); and `/v1/whoami`,
what any key may ask about itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from stratoq.api.common import Caller, answer
from stratoq.api.contract import (
    CreatedKey,
    Identity,
    KeyList,
    KeyRecord,
    KeyRequest,
    responses,
)
from stratoq.core.errors import ForbiddenError

if TYPE_CHECKING:
    from stratoq.services.app import Services


def register(app: APIGatewayRestResolver, services: Services, caller: Caller) -> None:
    """Add the key routes to `app`, answering from `services`."""

    def key_admin(caller_tenant: str, tenant: str | None) -> bool:
        """True if the caller manages every tenant's keys; 403 if it asks for another
        tenant's."""
        if caller.is_operator(caller_tenant):
            return True
        if tenant is not None and tenant != caller_tenant:
            raise ForbiddenError(f"this API key manages the keys of tenant {caller_tenant!r} only")
        return False

    @app.get("/v1/whoami", responses=responses({200: ("the caller's key", Identity)}))
    def whoami() -> Response[str]:
        """The tenant and scopes of the calling key, and whether it is one of the
        operator's (whose admin keys act on what every tenant shares: pausing queues,
        redriving dead letters, every tenant's keys). Any valid key may ask; a client
        (the console) shows only what the key can do."""
        tenant = caller("tasks:read")  # every scope implies it: any valid key
        scopes = caller.scopes()
        operator = "admin" in scopes and caller.is_operator(tenant)
        return answer(200, Identity(tenant=tenant, scopes=scopes, operator=operator))

    @app.post("/v1/keys", responses=responses({201: ("the key, shown once", CreatedKey)}, 400, 413))
    def create_key(request: KeyRequest) -> Response[str]:
        """Create an API key (admin). The key is in this answer only."""
        key_admin(caller("admin"), request.tenant)
        key, record = services.keys.create(request.tenant, request.scopes, request.name)
        created = CreatedKey.model_validate({"key": key, **record.public()}).model_dump(mode="json")
        # The key first, where it has always been in this answer.
        return answer(201, {"key": created.pop("key"), **created})

    @app.get("/v1/keys", responses=responses({200: ("keys, without secrets", KeyList)}))
    def list_keys(tenant: Annotated[str | None, Query(max_length=64)] = None) -> Response[str]:
        mine = caller("admin")
        if not key_admin(mine, tenant):
            tenant = mine
        found = services.keys.list_keys(tenant)
        return answer(200, KeyList.model_validate({"keys": [k.public() for k in found]}))

    @app.delete("/v1/keys/<key_id>", responses=responses({200: ("revoked", KeyRecord)}, 404))
    def revoke_key(key_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        mine = caller("admin")
        # Another tenant's key is reported missing, as another tenant's task is.
        scope = None if key_admin(mine, None) else mine
        return answer(200, KeyRecord.model_validate(services.keys.revoke(key_id, scope).public()))
