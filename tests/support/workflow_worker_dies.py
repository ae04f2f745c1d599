"""A worker that SIGKILLs itself at a step of telling a workflow that a node ended: the
kill -9 test of the fan-in (tests/integration/test_workflow_kills.py).

    python -m tests.support.workflow_worker_dies STEP

STEP `before_hook`: dies after recording a node's task as succeeded, before telling
its workflow; `after_count`: dies after the count that brings a child's `remaining` to
0, before starting it; `after_start`: dies after the child's state became `started`,
before its task exists. Messages are received with a 1 s visibility timeout, so the
next worker sees the killed one's message again a second later.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from stratoq.adapters.store.workflows import WorkflowStore
from stratoq.core.settings import Settings
from stratoq.services.app import Services
from stratoq.services.runner import InlineRunner
from stratoq.services.workflows import Workflows
from tests.support.pump import apply


def die() -> None:
    print("DYING", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    step = sys.argv[1]
    services = Services(Settings.from_env())
    if step == "before_hook":
        Workflows.ended = lambda self, task: die()  # type: ignore[method-assign,assignment,misc]
    elif step == "after_count":
        count = WorkflowStore.arrive

        def arrive(self: WorkflowStore, *args: Any) -> Any:
            counted, node = count(self, *args)
            if counted and node.get("remaining") == 0:
                die()
            return counted, node

        WorkflowStore.arrive = arrive  # type: ignore[method-assign]
    elif step == "after_start":
        move = WorkflowStore.move

        def moved(self: WorkflowStore, wf: str, index: int, to: str, allowed: Any) -> bool:
            done = move(self, wf, index, to, allowed)
            if done and to == "started":
                die()
            return done

        WorkflowStore.move = moved  # type: ignore[method-assign]
    worker = services.worker(InlineRunner())
    while True:
        for d in services.transport.receive("default", 10, 1, 1):
            apply(services.enqueuer, d, worker.process(d))


if __name__ == "__main__":
    main()
