"""Enqueue with the real Enqueuer and die (`os._exit(137)`, as SIGKILL would) at a step
boundary: the kill-between-steps test of the enqueue gap (docs/architecture.md).

    python -m tests.support.enqueue_and_die MODE PATH DIE_AT N [one|keyed|batch]

MODE `before_store`: the write that stores the DIE_AT-th enqueue's task(s) never starts
(its message is already sent); `after_store`: it lands, then the process dies before
enqueue returns. Tasks run `record` into PATH. Prints `ENQUEUED <id>` for each enqueue
that returned and `DYING <id>` for the tasks of the one that did not.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from stratoq.core.models import TaskRequest
from stratoq.core.settings import Settings
from stratoq.services.app import Services


def main() -> None:
    mode, path, die_at, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    kind = sys.argv[5] if len(sys.argv) > 5 else "one"
    enqueuer = Services(Settings.from_env()).enqueuer
    store = enqueuer.store
    calls = 0

    def dying(write: Callable[..., Any], ids: Callable[..., list[str]]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls != die_at:
                return write(*args, **kwargs)
            if mode == "after_store":
                write(*args, **kwargs)
            for tid in ids(*args):
                print(f"DYING {tid}", flush=True)
            os._exit(137)

        return wrapped

    store.create = dying(store.create, lambda task, *_: [task.id])  # type: ignore[method-assign]
    store.create_many = dying(store.create_many, lambda tasks: [t.id for t in tasks])  # type: ignore[method-assign]

    def request(i: int) -> TaskRequest:
        key = f"{os.getpid()}-{i}" if kind == "keyed" else None
        return TaskRequest(name="record", payload={"path": path}, idempotency_key=key)

    for i in range(n):
        if kind == "batch":
            done = enqueuer.enqueue_many([request(i * 3 + j) for j in range(3)])
        else:
            done = [enqueuer.enqueue(request(i))]
        for result in done:
            print(f"ENQUEUED {result.task.id}", flush=True)


if __name__ == "__main__":
    main()
