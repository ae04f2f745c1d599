"""What every Lambda function of the stack shares: its composition root, built once.

A Lambda instance is one process: the first invocation builds `Services` from the
function's environment (with EMF metrics, CloudWatch's format) and later invocations
reuse it. Handler modules wrap their callable objects with `entry`, which builds the
object on first use and flushes the invocation's metrics when it ends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from stratoq.handlers.emf import EmfRecorder
from stratoq.observability import tracing
from stratoq.observability.metrics import Metrics
from stratoq.services.app import Services

Handler = Callable[[dict[str, Any], Any], Any]
H = TypeVar("H", bound=Handler)


@functools.cache
def services() -> Services:
    """This Lambda instance's services (read from its environment once)."""
    return Services.from_env(metrics=Metrics([EmfRecorder()]))


def entry(
    build: Callable[[Services], H], make_services: Callable[[], Services] = services
) -> Handler:
    """A `lambda_handler` that builds its handler object once (from `make_services()`,
    this instance's services unless a test gives its own) and flushes the invocation's
    metrics when each invocation ends."""
    made = functools.cache(make_services)
    handler = functools.cache(lambda: build(made()))

    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        try:
            return handler()(event, context)
        finally:
            made().metrics.flush()
            # The instance may be frozen once it answers: spans go out now, not later.
            tracing.flush()

    return lambda_handler
