"""The dev stack's commands, a plugin of the `stratoq` command line.

The product CLI never imports this package (the Lambda artifact is built without it): it
finds these commands through the "stratoq.commands" entry points in pyproject.toml, one
per command, and loads each when it builds its parser. Importing this module needs
nothing beyond the product's own dependencies; the optional ones ([local]: moto, the SAM
translator) are checked when a command runs, so a missing one is a sentence, not a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
from pathlib import Path

from stratoq import project
from stratoq.cli.common import (
    Subparsers,
    count,
    needs_local_extra,
    port,
    settings_from,
)

# What each command imports from the [local] extra (moto[server] brings Flask with it).
DEV_NEEDS = ("moto.server", "samtranslator", "yaml")
PROVISION_NEEDS = ("samtranslator", "yaml")


def _require(command: str, modules: tuple[str, ...]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise needs_local_extra(command, exc) from None


def register_dev(sub: Subparsers) -> None:
    """Add `dev` to the command line."""
    d = sub.add_parser("dev", help="run the whole stack on the embedded emulator")
    d.add_argument("--port", type=port, default=8080, help="API port (default 8080)")
    d.add_argument("--aws-port", type=port, default=0, help="emulator port (default: free)")
    d.add_argument("--metrics-port", type=port, default=9464, help="0 turns metrics off")
    d.add_argument("--workers", type=count, default=4, help="poller slots (default 4)")
    d.add_argument(
        "--lambda-workers",
        type=count,
        default=0,
        help="Lambda-style SQS batch consumers per queue (default 0)",
    )
    d.add_argument(
        "--api-key",
        "--bootstrap-key",
        dest="bootstrap_key",
        help="fix the bootstrap admin key (default: env STRATOQ_API_KEY, else a new one)",
    )
    d.add_argument(
        "--tasks",
        help="module(s) defining task handlers (default: env STRATOQ_TASKS_MODULE, else "
        "[tool.stratoq] tasks of the nearest pyproject.toml, else stratoq.examples)",
    )
    d.add_argument("--state-file", default=".stratoq/dev.json")
    d.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="run the schedule clock this many times faster than real time (tests, demos)",
    )
    d.add_argument(
        "--tls",
        action="store_true",
        help="serve the API over HTTPS with a locally generated certificate "
        "(its CA goes to dev.json as ca_bundle; the SDK and CLI trust it from there)",
    )
    d.add_argument(
        "--persist",
        action="store_true",
        help="keep the emulator's state (tasks, queues, keys, schedules) across restarts: "
        "saved when the stack stops, restored at the next start (emulator.state next to "
        "--state-file)",
    )
    d.add_argument(
        "--faults",
        type=_fault_spec,
        default=os.environ.get("STRATOQ_FAULTS", ""),
        metavar="SPEC",
        help="inject AWS faults into the emulator's answers, e.g. "
        "'dynamodb:UpdateItem=lost:0.05,sqs:*=throttle:0.02' (default: env STRATOQ_FAULTS; "
        "docs/reliability.md)",
    )
    d.add_argument(
        "--faults-seed",
        type=int,
        default=_env_int("STRATOQ_FAULTS_SEED"),
        metavar="N",
        help="seed of the fault injector's choices, to repeat a run (default: env "
        "STRATOQ_FAULTS_SEED, else random)",
    )
    d.set_defaults(func=cmd_dev)


def _fault_spec(text: str) -> str:
    from stratoq.local.faults import FaultSpecError, parse_spec

    try:
        parse_spec(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.lstrip("-").isdigit() else None


def register_provision(sub: Subparsers) -> None:
    """Add `provision` to the command line."""
    pr = sub.add_parser("provision", help="create template.yaml's resources on an emulator")
    pr.add_argument("--stack", default="stratoq")
    pr.set_defaults(func=cmd_provision)


def register_scheduler(sub: Subparsers) -> None:
    """Add `scheduler` (the rule clock) to the command line."""
    sr = sub.add_parser("scheduler", help="fire schedule rules from an emulator (LocalStack, moto)")
    sr.add_argument("--clock-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    sr.set_defaults(func=cmd_scheduler)


def cmd_dev(args: argparse.Namespace) -> int:
    _require("dev", DEV_NEEDS)
    from stratoq.local.dev import DevOptions, run

    return run(
        DevOptions(
            port=args.port,
            aws_port=args.aws_port,
            metrics_port=args.metrics_port,
            workers=args.workers,
            lambda_workers=args.lambda_workers,
            api_key=args.bootstrap_key or os.environ.get("STRATOQ_API_KEY") or None,
            tasks=project.tasks_module(args.tasks, Path.cwd()),
            state_file=Path(args.state_file),
            clock_speed=args.clock_speed,
            tls=args.tls,
            persist=args.persist,
            faults=args.faults,
            faults_seed=args.faults_seed,
        )
    )


def cmd_provision(args: argparse.Namespace) -> int:
    _require("provision", PROVISION_NEEDS)
    from stratoq.local.provision import DEV_POLL_WAIT_SECONDS, provision

    settings = provision(settings_from(args), stack=args.stack)
    if "STRATOQ_POLL_WAIT_SECONDS" not in os.environ:
        # Pollers on an emulator wait as the dev stack's own do: an empty receive costs
        # nothing there, and an idle poller of three priority queues long-polls one of
        # them for a third of this wait, losing handed-back messages (another fleet's
        # tasks, docs/deploy.md) to pollers that ask more often.
        settings = settings.with_(poll_wait_seconds=DEV_POLL_WAIT_SECONDS)
    for key, value in settings.to_env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    from stratoq.local.clock import serve_clock

    return serve_clock(settings_from(args), args.clock_speed)
