"""`stratoq keys`: API keys over the API (create, list, revoke; an admin key)."""

from __future__ import annotations

import argparse
import sys

from stratoq.cli.common import Subparsers, client


def register(sub: Subparsers) -> None:
    """Add `keys` to the command line."""
    k = sub.add_parser("keys", help="API keys (needs an admin key)")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kc = ks.add_parser("create", help="create a key; printed once")
    kc.add_argument("--tenant", required=True)
    kc.add_argument(
        "--scopes", default="tasks:read,tasks:write", help="tasks:read tasks:write admin"
    )
    kc.add_argument("--name", default="")
    kc.set_defaults(func=cmd_keys_create)
    kl = ks.add_parser("list", help="list keys (never the secrets)")
    kl.add_argument("--tenant")
    kl.set_defaults(func=cmd_keys_list)
    kr = ks.add_parser("revoke", help="revoke a key by its key_id")
    kr.add_argument("key_id")
    kr.set_defaults(func=cmd_keys_revoke)


def cmd_keys_create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.replace(",", " ").split() if s.strip()]
    created = client(args).create_key(args.tenant, scopes, args.name)
    print(created["key"])
    print(
        f"key_id {created['key_id']}, tenant {created['tenant']}, scopes "
        f"{' '.join(created['scopes'])}: store the key now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    for k in client(args).list_keys(args.tenant):
        state = "revoked" if k["revoked"] else "active"
        print(
            f"{k['key_id']}  {state:<7}  {k['tenant']:<16}  "
            f"{' '.join(k['scopes']):<28}  {k['name']}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    revoked = client(args).revoke_key(args.key_id)
    print(f"revoked {revoked['key_id']} (tenant {revoked['tenant']})")
    return 0
