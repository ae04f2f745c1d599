"""Structured logs: one JSON object per line on stdout, whatever process logs.

Every module logs through the standard library, `logging.getLogger(__name__)`, so its
logger sits under "stratoq" and its records reach that logger's one handler (this
module's `stream_handler()`). Who formats them depends on the process:

- Lambda functions: the handlers' Powertools `Logger(service="stratoq",
  logger_handler=stream_handler())` owns the "stratoq" logger; its formatter, with the
  Lambda context keys, formats the records of every `stratoq.*` logger too.
- pollers, the broker bridge (`stratoq worker`, `stratoq bridge`): `configure()` gives
  the handler `JsonFormatter`, which writes the keys Powertools writes.

Both share the handler, so a process that does both (the dev stack runs pollers and the
Lambda handlers) writes each record once, in Powertools' format.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from typing import Any

SERVICE = "stratoq"

# The attributes every LogRecord has; any other attribute came from `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "location",
    "timestamp",
}

_handler: logging.StreamHandler[Any] | None = None


def stream_handler() -> logging.StreamHandler[Any]:
    """The process's one handler of the "stratoq" logger: stdout, made on first use."""
    global _handler
    if _handler is None:
        _handler = logging.StreamHandler(sys.stdout)
    return _handler


def level_from_env() -> str:
    """The level Powertools would choose outside Lambda: POWERTOOLS_LOG_LEVEL, LOG_LEVEL,
    else INFO (so a poller keeps honouring the variable it honoured before)."""
    level = os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO"
    return level.upper()


class JsonFormatter(logging.Formatter):
    """Powertools' default JSON log line, with the standard library only: level,
    location, message, timestamp, service, the record's `extra` keys, and for an
    exception its text, name and frames. Keys whose value is None are left out."""

    def format(self, record: logging.LogRecord) -> str:
        msecs = f"{int(record.msecs):03d}"
        log: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": _message(record),
            "timestamp": time.strftime(
                f"%Y-%m-%d %H:%M:%S,{msecs}%z", time.localtime(record.created)
            ),
            "service": SERVICE,
        }
        log.update((k, v) for k, v in record.__dict__.items() if k not in _RECORD_ATTRS)
        exc = record.exc_info
        if isinstance(exc, tuple) and exc[0] is not None:
            log.setdefault("exception", self.formatException(exc))
            log.setdefault("exception_name", exc[0].__name__)
            log.setdefault("exception_notes", getattr(exc[1], "__notes__", None))
            log["stack_trace"] = {
                "type": exc[0].__name__,
                "value": exc[1],
                "module": type(exc[1]).__module__,
                "frames": [
                    {"file": f.filename, "line": f.lineno, "function": f.name, "statement": f.line}
                    for f in traceback.extract_tb(exc[2])
                ],
            }
        log = {k: v for k, v in log.items() if v is not None}
        return json.dumps(log, default=str, separators=(",", ":"), ensure_ascii=False)


def _message(record: logging.LogRecord) -> Any:
    # As Powertools does: a dict stays a dict, %-arguments are applied, and a string
    # that is JSON is embedded as JSON.
    if isinstance(record.msg, dict):
        return record.msg
    if record.args:
        return record.getMessage()
    if isinstance(record.msg, str):
        try:
            return json.loads(record.msg)
        except ValueError:
            return record.msg
    return record.msg


def configure() -> logging.Logger:
    """JSON logs for a process that is not a Lambda function; idempotent.

    Leaves the handler's formatter alone if Powertools has set one already.
    """
    logger = logging.getLogger(SERVICE)
    handler = stream_handler()
    if handler.formatter is None:
        handler.setFormatter(JsonFormatter())
    if handler not in logger.handlers:
        logger.addHandler(handler)
        logger.setLevel(level_from_env())
    return logger
