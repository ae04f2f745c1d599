"""Lambda entry of the HTTP API: `stratoq.api.app.ApiFunction`, built once per instance.

The first invocation builds the instance's `Services` from the function's environment
(`handlers.edge`); each invocation's metrics are flushed when it ends (EMF).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from stratoq.api.app import ApiFunction
from stratoq.handlers.edge import entry
from stratoq.observability.logging import stream_handler

# The "stratoq" logger and its one handler: Powertools formats every stratoq.* logger,
# the API's own loggers included.
logger = Logger(service="stratoq", logger_handler=stream_handler())

lambda_handler = entry(ApiFunction)
