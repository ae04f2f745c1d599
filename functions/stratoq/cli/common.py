"""What the command groups share: argument types, output, and how a command gets its
settings, API client and services.

Command modules import only this and the standard library at import time (the parser is
built on every invocation, `stratoq --help` included); what a command needs beyond that
it imports when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any, TypeAlias

from stratoq.core.errors import UsageError
from stratoq.core.settings import Settings

if TYPE_CHECKING:
    from stratoq.adapters.store import TaskStore
    from stratoq.observability.metrics import Recorder
    from stratoq.sdk.client import Client
    from stratoq.services.app import Services

__all__ = ["UsageError"]  # commands raise it from here; it lives in core.errors

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What a command group's `register(subparsers)` adds its commands to."""

EXTRAS = {
    "local": "the dev stack (the embedded AWS emulator and the SAM translator)",
    "bridge": "the RabbitMQ client (pika)",
}
"""What each extra of the package (pyproject.toml) brings, as the error says it."""


def missing_extra(what: str, extra: str, exc: ImportError) -> str:
    """The sentence for `what` (a command, a fixture) whose extra is not installed."""
    return (
        f"{what} needs {EXTRAS[extra]}, which is not installed ({exc}): "
        f"pip install 'stratoq[{extra}]'"
    )


def needs_extra(command: str, extra: str, exc: ImportError) -> UsageError:
    """The error for a command whose extra (its optional dependencies) is not installed."""
    return UsageError(missing_extra(f"`stratoq {command}`", extra, exc))


def needs_local_extra(command: str, exc: ImportError) -> UsageError:
    """The error for a dev-stack command whose optional dependencies are missing."""
    return needs_extra(command, "local", exc)


# ------------------------------------------------------- settings, client, services
# Everything a command builds from the environment is built here, so that how the CLI
# wires settings to adapters and services is decided in one place.
def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings with the global and per-command overrides applied."""
    settings = Settings.from_env()
    if getattr(args, "aws_endpoint_url", None):
        settings = settings.with_(aws_endpoint_url=args.aws_endpoint_url)
    if getattr(args, "tasks", None):
        settings = settings.with_(tasks_module=args.tasks)
    return settings


def services_for(settings: Settings, *recorders: Recorder) -> Services:
    """The command's composition root. A long-running command passes the recorders its
    metrics go to (prometheus-client, which /metrics serves); a one-shot command records
    nothing."""
    from stratoq.observability.metrics import Metrics
    from stratoq.services.app import Services

    return Services(settings, metrics=Metrics(recorders))


def key_store_for(settings: Settings) -> TaskStore:
    """The task table for maintenance that reads and writes keys only: no cipher."""
    from stratoq.adapters.store import TaskStore

    return TaskStore(services_for(settings).dynamodb, settings.tasks_table)


def client(args: argparse.Namespace) -> Client:
    """The API client named by --api-url/--api-key/--ca-bundle, the environment or the
    nearest .stratoq/dev.json (the SDK's search, so both find the same stack)."""
    from stratoq.sdk.client import Client

    return Client(args.api_url, args.api_key, ca_bundle=args.ca_bundle)


# ------------------------------------------------------------------------- output
def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def payload(args: argparse.Namespace) -> Any:
    """--payload parsed as JSON (None when not given)."""
    try:
        return json.loads(args.payload) if args.payload is not None else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc.msg} at position {exc.pos}") from None


# ------------------------------------------------------------------ argument types
def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive(text: str) -> int:
    value = whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    value = whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return value


def env_port(name: str, default: int) -> int:
    """A port from the environment (a wrong value is refused, not ignored)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return port(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None
