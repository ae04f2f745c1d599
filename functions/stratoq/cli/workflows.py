"""`stratoq workflows`: submit a workflow from a JSON file, show, list and cancel them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stratoq.cli.common import Subparsers, UsageError, client, positive, print_json


def register(sub: Subparsers) -> None:
    """Add `workflows` to the command line."""
    w = sub.add_parser("workflows", help="DAGs of tasks: chains, groups, chords")
    ws = w.add_subparsers(dest="workflows_command", required=True, metavar="ACTION")
    s = ws.add_parser(
        "submit",
        help="submit a workflow: a JSON file (- for stdin) of "
        '{"nodes": [{"name", "task", "payload", "depends_on"}], "on_failure"}',
    )
    s.add_argument("file", nargs="?", help="a file holding the workflow as JSON; - reads stdin")
    s.add_argument("--json", dest="text", metavar="JSON", help="the workflow as JSON text")
    s.add_argument("--on-failure", dest="on_failure", choices=["stop", "continue"])
    s.add_argument("--wait", type=float, metavar="SECONDS", help="wait for it to end")
    s.set_defaults(func=cmd_submit)
    sh = ws.add_parser("show", help="a workflow and its nodes")
    sh.add_argument("id")
    sh.set_defaults(func=cmd_show)
    ls = ws.add_parser("list", help="workflows, newest first")
    ls.add_argument("--limit", type=positive, default=20)
    ls.add_argument("--next-token", dest="next_token")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    c = ws.add_parser("cancel", help="cancel every node that has not started")
    c.add_argument("id")
    c.set_defaults(func=cmd_cancel)


def _read(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    return _parse(text, name)


def _parse(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def cmd_submit(args: argparse.Namespace) -> int:
    from stratoq.core.workflows import WorkflowRequest, plan

    if (args.file is None) == (args.text is None):
        raise UsageError("give the workflow as a FILE (- for stdin) or as --json TEXT")
    data = _read(args.file) if args.text is None else _parse(args.text, "--json")
    if isinstance(data, list):
        data = {"nodes": data}
    if not isinstance(data, dict):
        raise UsageError("a workflow is a JSON object with `nodes`, or a list of nodes")
    if args.on_failure:
        data["on_failure"] = args.on_failure
    request = WorkflowRequest.model_validate(data)
    plan(request.nodes)  # a repeated name, unknown dependency or cycle: said before sending
    api = client(args)
    wf = api.submit_workflow(request)
    if args.wait is not None:
        wf = api.wait_workflow(wf.id, timeout=args.wait)
        print_json(wf.model_dump(mode="json"))
        return 0 if wf.status == "succeeded" else 1
    print_json(wf.model_dump(mode="json", exclude_none=True))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print_json(client(args).get_workflow(args.id).model_dump(mode="json"))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    found, token = client(args).list_workflows(args.limit, args.next_token)
    if args.json:
        print_json(
            {
                "workflows": [w.model_dump(mode="json", exclude_none=True) for w in found],
                "next_token": token,
            }
        )
        return 0
    for wf in found:
        print(
            f"{wf.id}  {wf.status:<9} {wf.node_count:>6} nodes  "
            f"{wf.created_at.isoformat(timespec='seconds')}  {wf.name}"
        )
    if token:
        print(f"more: --next-token {token}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    print_json(client(args).cancel_workflow(args.id).model_dump(mode="json"))
    return 0
