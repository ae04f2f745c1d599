"""`stratoq init NAME`: a new project of one's own tasks, ready to run, test and deploy."""

from __future__ import annotations

import argparse
from pathlib import Path

from stratoq.cli.common import Subparsers


def register(sub: Subparsers) -> None:
    """Add `init` to the command line."""
    i = sub.add_parser(
        "init", help="create a project for your own tasks (package, tests, template, Makefile)"
    )
    i.add_argument("name", help="the project's name, also its Python package (e.g. my_tasks)")
    i.add_argument(
        "--directory",
        type=Path,
        help="where to create it (default: ./NAME); must be missing or empty",
    )
    i.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    from stratoq.project.scaffold import create

    directory: Path = args.directory or Path(args.name)
    written = create(directory, args.name)
    print(f"Created {directory}/ with {len(written)} files:")
    for path in written:
        print(f"  {path}")
    print(
        f"Next:\n  cd {directory}\n  make install   # in a virtualenv\n"
        "  make test\n  make run\n  make deploy   # SAM CLI and AWS credentials"
    )
    return 0
