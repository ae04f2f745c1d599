"""`stratoq` command line: the top-level parser, its command groups, and exit codes.

Exit codes: 0 done; 1 the task(s) failed or were not found; 2 bad usage or
configuration (with a sentence saying what to change); 3 the API refused the request.
Task and API commands talk to the HTTP API named by --api-url/--api-key, by
STRATOQ_API_URL/STRATOQ_API_KEY, or by the .stratoq/dev.json that `stratoq dev` writes,
found in the current directory or the nearest parent that has one (stratoq.sdk.dev_file).

Each command group is a module with a `register(subparsers)` that adds its commands.
Groups that need the dev stack (stratoq.local, which nothing here imports) are plugins
found through the "stratoq.commands" entry points.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import NoReturn

import urllib3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from pydantic import ValidationError

from stratoq.cli import (
    backfill,
    bridge,
    init,
    keys,
    queues,
    schedules,
    tasks,
    top,
    webhooks,
    worker,
    workflows,
)
from stratoq.cli.common import Subparsers, needs_local_extra
from stratoq.core.errors import StratoqError

Register = Callable[[Subparsers], None]

PLUGINS = "stratoq.commands"
"""The entry point group of command groups that live outside the product package."""

# The command groups in the order `stratoq --help` lists them. A name is a plugin's
# place: the entry point of that name fills it, or, when it cannot be loaded (the
# [local] extra is missing), a stand-in that says how to install it. Plugins not named
# here follow the built-in groups.
GROUPS: tuple[Register | str, ...] = (
    init.register,
    "dev",
    worker.register,
    "provision",
    backfill.register,
    tasks.register,
    queues.register,
    top.register,
    schedules.register,
    "scheduler",
    workflows.register,
    bridge.register,
    keys.register,
    webhooks.register,
)


def _unavailable(name: str, exc: ImportError) -> Register:
    """A stand-in for a plugin command that cannot be loaded: it exits 2, saying why."""

    def fail(args: argparse.Namespace) -> NoReturn:
        raise needs_local_extra(name, exc)

    def register(sub: Subparsers) -> None:
        # No option is known to it ("\0" is its only prefix), so any arguments, --help
        # included, reach `fail` instead of an argparse error about them.
        stand_in = sub.add_parser(
            name, help="needs the dev stack (the [local] extra)", add_help=False, prefix_chars="\0"
        )
        stand_in.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        stand_in.set_defaults(func=fail)

    return register


def _plugins() -> dict[str, Register]:
    found: dict[str, Register] = {}
    for ep in entry_points(group=PLUGINS):
        try:
            found[ep.name] = ep.load()
        except ImportError as exc:
            found[ep.name] = _unavailable(ep.name, exc)
    return found


def parser() -> argparse.ArgumentParser:
    """The whole `stratoq` parser: global options, then every command group's commands."""
    p = argparse.ArgumentParser(prog="stratoq", description="stratoq: a serverless task queue.")
    p.add_argument("--aws-endpoint-url", help="AWS endpoint (an emulator); default: env or AWS")
    p.add_argument(
        "--api-url",
        help="API URL (default: STRATOQ_API_URL, else .stratoq/dev.json here or in a parent)",
    )
    p.add_argument(
        "--api-key",
        help="API key (default: STRATOQ_API_KEY, else .stratoq/dev.json here or in a parent)",
    )
    p.add_argument(
        "--ca-bundle",
        help="CA certificate file to trust for HTTPS (default: STRATOQ_CA_BUNDLE, or the "
        "ca_bundle `stratoq dev --tls` wrote to .stratoq/dev.json for its API)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    plugins = _plugins()
    for group in GROUPS:
        if isinstance(group, str):
            missing = ImportError(f"no {PLUGINS!r} entry point named {group!r}")
            group = plugins.pop(group, None) or _unavailable(group, missing)
        group(sub)
    for name in sorted(plugins):
        plugins[name](sub)
    return p


def project_importable() -> None:
    """Make the current directory and its project's root importable, as `python -m`
    does for the current directory.

    The installed `stratoq` script puts only its own directory on sys.path, so without
    this `stratoq worker --tasks myapp.tasks` could not import ./myapp/tasks.py of the
    project it runs in, nor `stratoq dev` run in a subdirectory the tasks module that
    the project's pyproject.toml names. Appended: an installed module of the same name
    still comes first. Processes the command starts (pollers; task slots, from the fork
    server or spawned) are given this sys.path.
    """
    from pathlib import Path

    from stratoq.project import project_root

    here = os.getcwd()
    wanted = [] if "" in sys.path else [here]
    root = project_root(Path(here))
    if root is not None:
        wanted.append(str(root))
    for path in wanted:
        if path not in sys.path:
            sys.path.append(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit code, or exit 1-3 with a sentence on stderr."""
    from stratoq.sdk.client import ApiError, NotFound, WaitTimeout

    p = parser()
    args = p.parse_args(argv)
    project_importable()
    try:
        return int(args.func(args))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'input'}: {err['msg']}"
            for err in exc.errors()
        )
        p.exit(2, f"stratoq: invalid input: {problems}\n")
    except NotFound as exc:
        p.exit(1, f"stratoq: {exc.message}\n")
    except ApiError as exc:
        p.exit(3, f"stratoq: the API refused: {exc}\n")
    except WaitTimeout as exc:
        p.exit(1, f"stratoq: {exc}\n")
    except StratoqError as exc:
        p.exit(2, f"stratoq: {exc}\n")
    except (NoCredentialsError, PartialCredentialsError) as exc:
        # A command that reaches AWS itself (worker, backfill-listing) on a machine with
        # no credentials: the first hour of a user who has not pointed it anywhere yet.
        p.exit(
            2,
            f"stratoq: no AWS credentials ({exc}): set AWS_PROFILE or AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, or pass --aws-endpoint-url for an emulator\n",
        )
    except EndpointConnectionError as exc:
        # Before OSError's "the API": this is AWS (or the emulator) itself.
        p.exit(
            2,
            f"stratoq: cannot reach AWS at {exc.kwargs.get('endpoint_url', '?')}: is the "
            "emulator (stratoq dev) running, and are --aws-endpoint-url or "
            "STRATOQ_AWS_ENDPOINT_URL and AWS_REGION right?\n",
        )
    except ClientError as exc:
        # AWS answered no (access denied, a table that is not there): its own sentence.
        error = exc.response.get("Error", {})
        p.exit(
            2,
            f"stratoq: AWS refused {exc.operation_name}: "
            f"{error.get('Code', '?')}: {error.get('Message', exc)}\n",
        )
    except BotoCoreError as exc:
        # The AWS configuration itself (an unknown profile, an unreadable config file).
        p.exit(2, f"stratoq: AWS: {exc}\n")
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        if isinstance(getattr(exc, "reason", exc), urllib3.exceptions.SSLError | ssl.SSLError):
            p.exit(
                2,
                "stratoq: cannot reach the API: its TLS certificate is not trusted; "
                "pass --ca-bundle (or set STRATOQ_CA_BUNDLE)\n",
            )
        p.exit(2, f"stratoq: cannot reach the API ({type(exc).__name__}); is it running?\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
