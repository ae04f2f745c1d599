"""The HTTP API as a test talks to it: the local API Gateway emulation with the real
authorizer and API function on a loopback port, and an admin key of the operator tenant."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from stratoq.api.app import ApiFunction
from stratoq.core.settings import Settings
from stratoq.handlers.authorizer import Authorizer
from stratoq.local.gateway import Gateway, GatewayServer
from stratoq.services.app import Services


@dataclass(frozen=True)
class Served:
    url: str
    key: str  # the operator tenant's admin key
    services: Services


@contextmanager
def serve_api(
    settings: Settings, wrap: Callable[[ApiFunction], Any] | None = None
) -> Iterator[Served]:
    """The API on a free loopback port until the block ends; `wrap` may put something
    (a request counter) between the gateway and the API function."""
    services = Services(settings)
    key, _ = services.keys.create(settings.operator_tenant, ["admin"], "operator")
    function = ApiFunction(services)
    handler = wrap(function) if wrap is not None else function
    server = GatewayServer(
        Gateway(handler, Authorizer(services), settings.region), "127.0.0.1", 0
    ).start()
    try:
        yield Served(server.url, key, services)
    finally:
        server.stop()
