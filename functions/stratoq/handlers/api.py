"""Lambda entry of the HTTP API: `stratoq.api.app.ApiFunction`, built once per instance.

The first invocation builds the instance's `Services` from the function's environment
(`handlers.edge`); each invocation's metrics are flushed when it ends (EMF).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from stratoq.api.app import ApiFunction
from stratoq.handlers.edge import entry

# The "stratoq" logger's JSON handler; the API's own loggers are its children.
logger = Logger(service="stratoq")

lambda_handler = entry(ApiFunction)
