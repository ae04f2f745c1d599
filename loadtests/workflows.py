"""A chord's fan-in on the emulator: `python -m loadtests.workflows --members 10000`.

One chord of N `noop` members and a `noop` callback, run by `stratoq worker -p 2 -c 8`
on the counting moto server (loadtests/emulator.py). Prints the time from the last
member finishing to the callback starting, the whole run's time, the AWS requests per
workflow node by action, and the list price per node those requests imply, next to Step
Functions' (Standard workflows: $25 per million state transitions, one per node at
least). Figures in docs/benchmarks.md ("Workflows").
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any

from loadtests.bench import PRICES, ROOT, Emulator, _env

STEP_FUNCTIONS_PER_TRANSITION = 25.0 / 1_000_000
# A number in a DynamoDB number set: about 1 byte per 2 digits plus 1 (4-digit indexes).
BYTES_PER_DONE_ENTRY = 3


def run(members: int, processes: int, concurrency: int) -> dict[str, Any]:
    from stratoq.core.settings import Settings
    from stratoq.core.workflows import chord, node_task_id
    from stratoq.local.provision import provision
    from stratoq.services.app import Services

    emu = Emulator()
    settings = provision(
        Settings(aws_endpoint_url=emu.url, tasks_module="loadtests.tasks", poll_wait_seconds=1),
        stack="wfbench",
    )
    services = Services(settings)
    workers = subprocess.Popen(
        [sys.executable, "-m", "stratoq", "worker", "-p", str(processes), "-c", str(concurrency)],
        cwd=ROOT,
        env=_env(**settings.to_env(), STRATOQ_METRICS_PORT="0"),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(4)  # the pollers start their slot processes before the clock runs
        emu.counts(reset=True)
        started = time.time()
        request = chord([("noop", None)] * members, ("noop", None))
        wf = services.workflows.submit(request, "default")
        submitted = time.time()
        store = services.workflows.store
        polls = 0
        while True:
            polls += 1
            item = store.workflow(wf.id)
            if item is not None and int(item["sinks_left"]) <= 0:
                break
            time.sleep(0.5)
        ended = time.time()
        counts = emu.counts()
        counts["DynamoDB.GetItem"] -= polls  # the harness's own reads of the workflow
    finally:
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(60)
    ids = [node_task_id(wf.id, i) for i in range(members + 1)]
    tasks = store.tasks(ids)
    callback = tasks[ids[-1]]
    last_member = max(tasks[i].finished_at for i in ids[:-1])  # type: ignore[type-var]
    assert callback.started_at is not None and last_member is not None
    emu.stop()
    nodes = members + 1
    per_node = {
        k: round(v / nodes, 3)
        for k, v in sorted(counts.items())
        if not k.endswith(("GetQueueAttributes", "GetQueueUrl", "ListQueues"))
    }
    return {
        "members": members,
        "submit_s": round(submitted - started, 1),
        "run_s": round(ended - started, 1),
        "last_member_to_callback_ms": int(
            (callback.started_at - last_member).total_seconds() * 1000
        ),
        "requests_per_node": per_node,
        "cost_per_node": _cost(per_node, members),
    }


def _cost(per_node: dict[str, float], members: int) -> dict[str, float]:
    """List price per node (USD per million nodes): SQS requests, DynamoDB write and
    read units. Writes are 1 unit each except the callback's counts, whose item grows
    with its `done` set (costed from its size); reads 1 unit each (items under 4 KB)."""
    get = lambda action: per_node.get(action, 0.0)  # noqa: E731
    updates = get("DynamoDB.UpdateItem")
    # The callback item's counts: one per member, each as large as the set so far.
    arrive_units = sum(
        math.ceil((200 + k * BYTES_PER_DONE_ENTRY) / 1024) for k in range(1, members + 1)
    )
    nodes = members + 1
    wru = (
        updates
        - members / nodes
        + arrive_units / nodes
        + get("DynamoDB.PutItem")
        + get("DynamoDB.BatchWriteItem") * 25  # at most 25 items of under 1 KB a batch
    )
    rru = get("DynamoDB.GetItem") + get("DynamoDB.BatchGetItem") * 100 + get("DynamoDB.Query")
    sqs = sum(v for k, v in per_node.items() if k.startswith("AmazonSQS."))
    kms = sum(v for k, v in per_node.items() if k.startswith("TrentService."))
    out = {
        "sqs": sqs * PRICES["sqs_per_million_requests"],
        "dynamodb_writes": wru * PRICES["dynamodb_per_million_wru"],
        "dynamodb_reads": rru * PRICES["dynamodb_per_million_rru"],
        "kms": kms * PRICES["kms_per_million_requests"],
    }
    out["total"] = sum(out.values())
    out["step_functions_per_transition"] = STEP_FUNCTIONS_PER_TRANSITION * 1_000_000
    return {k: round(v, 3) for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--members", type=int, default=10_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    for key, value in _env().items():
        if key.startswith("AWS_"):
            os.environ.setdefault(key, value)
    result = run(args.members, args.processes, args.concurrency)
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:<40} {v}")
        else:
            print(f"{key:<30} {value}")


if __name__ == "__main__":
    main()
