"""Lambda entry of the HTTP API: `stratoq.api.app.ApiFunction`, built once per process.

The first invocation builds the process's `Services` from the function's environment;
the invocation's metrics are flushed when it ends (EMF on Lambda).
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratoq.api.app import ApiFunction
from stratoq.observability import metrics
from stratoq.services.app import Services

# The "stratoq" logger's JSON handler; the API's own loggers are its children.
logger = Logger(service="stratoq")


@functools.cache
def api() -> ApiFunction:
    """This process's API function (its settings read from the environment once)."""
    return ApiFunction(Services.from_env())


@metrics.flush_after
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api()(event, context)
