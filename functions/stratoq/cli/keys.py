"""`stratoq keys`: API keys over the API (create, list, revoke; an admin key), and the
first admin key of a deployed stack straight from AWS (bootstrap; AWS credentials)."""

from __future__ import annotations

import argparse
import os
import sys

from stratoq.cli.common import Subparsers, client, settings_from


def register(sub: Subparsers) -> None:
    """Add `keys` to the command line."""
    k = sub.add_parser("keys", help="API keys (needs an admin key; bootstrap: AWS credentials)")
    ks = k.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    kb = ks.add_parser(
        "bootstrap",
        help="the first admin key of a deployed stack, straight in its keys table; printed once",
        description="Create an API key directly in the keys table of a deployed stack (its "
        "KeysTableName output) with AWS credentials, not through the API, so it works "
        "before any key exists. The key is printed on stdout, once; only its SHA-256 hash "
        "is stored. Env STRATOQ_BOOTSTRAP_KEY (sq_<12 hex>_<secret>) stores that key "
        "instead of a new one; storing it again is harmless.",
    )
    kb.add_argument("--stack", help="stack name (default: $STRATOQ_STACK or stratoq)")
    kb.add_argument(
        "--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's)"
    )
    kb.add_argument("--profile", help="AWS profile (default: AWS_PROFILE)")
    kb.add_argument(
        "--endpoint-url",
        help="an emulator's endpoint (default: --aws-endpoint-url, STRATOQ_AWS_ENDPOINT_URL, "
        "else AWS)",
    )
    kb.add_argument("--tenant", default="admin", help="the key's tenant (default: admin)")
    kb.add_argument(
        "--scopes",
        default="admin",
        help="comma-separated: admin, tasks:read, tasks:write (default: admin)",
    )
    kb.add_argument("--name", default="bootstrap", help="a label (default: bootstrap)")
    kb.set_defaults(func=cmd_keys_bootstrap)
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


def cmd_keys_bootstrap(args: argparse.Namespace) -> int:
    from stratoq.adapters import aws
    from stratoq.adapters.keys import bootstrap

    if args.profile:
        # boto3 sessions read it from the environment; so does every client built below.
        os.environ["AWS_PROFILE"] = args.profile
    settings = settings_from(args)
    if args.endpoint_url:
        settings = settings.with_(aws_endpoint_url=args.endpoint_url)
    if args.region:
        settings = settings.with_(region=args.region)
    elif not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        settings = settings.with_(region=aws.profile_region() or settings.region)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    done = bootstrap(
        settings,
        args.stack or os.environ.get("STRATOQ_STACK") or "stratoq",
        args.tenant,
        scopes,
        args.name,
        # From the environment only, so a chosen key never shows in a process list.
        key=os.environ.get("STRATOQ_BOOTSTRAP_KEY") or None,
    )
    print(done.key)
    print(
        f"key_id {done.record.key_id}, tenant {done.record.tenant}, scopes "
        f"{' '.join(done.record.scopes)} in {done.table}: "
        "store the key now, it is not shown again",
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
