"""`stratoq backfill-listing`: an upgrade step run against the task table directly."""

from __future__ import annotations

import argparse

from stratoq.cli.common import Subparsers, key_store_for, settings_from


def register(sub: Subparsers) -> None:
    """Add `backfill-listing` to the command line."""
    bf = sub.add_parser(
        "backfill-listing",
        help="list tasks stored before the `listing` index (upgrade step, docs/deploy.md)",
    )
    bf.set_defaults(func=cmd_backfill_listing)


def cmd_backfill_listing(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = key_store_for(settings)
    print(f"listed {store.backfill_listing()} task(s) in {settings.tasks_table}")
    return 0
