"""Rate-limit accuracy (issue 19, "9-10.5 per second in every 10 s window"): a task
whose token is less than a second away is slept out in the worker before its claim,
and a message towards its token is delayed rounded down, so tasks start at their
tokens: never before, and not in bunches up to a second after (SQS delays are whole
seconds). Worker.process in slot threads, as a poller's; times are the tasks' own."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stratoq.core.models import Task, TaskRequest, TaskStatus
from stratoq.services.enqueue import Enqueuer
from stratoq.services.handback import Action
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.pump import apply, pump_until_final


def stamps(path: Path) -> dict[str, list[float]]:
    """Task id -> its starts (epoch ms), as the task wrote them."""
    out: dict[str, list[float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        task_id, ns = line.split()
        out.setdefault(task_id, []).append(int(ns) / 1e6)
    return out


def tokens(core: Enqueuer, scope: str, count: int, interval_ms: float) -> list[int]:
    """The `count` tokens one enqueue took of the (otherwise unused) bucket, in order: the
    bucket's next token comes due one interval after the last (core.limits.take)."""
    item = core.store.client.get_item(
        TableName=core.store.table, Key={"pk": {"S": f"bucket#{scope}"}}, ConsistentRead=True
    )["Item"]
    tat = float(item["tat"]["N"])
    return [math.ceil(tat - (count - i) * interval_ms) for i in range(count)]


@contextmanager
def slots_running(core: Enqueuer, worker: Worker, slots: int) -> Iterator[None]:
    """Threads each receiving one message at a time and processing it, as a poller's
    slots, while the block runs."""
    stop = threading.Event()

    def slot() -> None:
        while not stop.is_set():
            for d in core.transport.receive("default", 1, 1, 30):
                apply(core, d, worker.process(d))

    threads = [threading.Thread(target=slot, daemon=True) for _ in range(slots)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(10)


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} not in {seconds} s"
        threading.Event().wait(0.1)


def test_a_burst_of_rate_limited_tasks_starts_one_token_apart(
    core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "starts.log"
    request = TaskRequest(
        name="stamp", payload={"path": str(log)}, rate_limit="5/s", rate_limit_key="api"
    )
    worker = Worker(core.store, core.transport, InlineRunner())
    # The slots up first, and one task through (the emulator's first bucket write of a
    # stack is slow): a token that comes before its message can only start late.
    with slots_running(core, worker, 8):
        probe = core.enqueue(request.model_copy(update={"rate_limit_key": "probe"})).task.id
        wait_until(lambda: probe in stamps(log), 60, "the first task")
        ids = [r.task.id for r in core.enqueue_many([request] * 20)]
        sent_ms = time.time() * 1000
        wait_until(lambda: len(stamps(log)) == 21, 60, "20 more starts")
    due = tokens(core, "key:default:api", 20, 200)
    started = stamps(log)
    # None lost, none run twice, no attempt spent on waiting.
    assert sorted(started) == sorted([probe, *ids]) and all(len(s) == 1 for s in started.values())
    tasks: list[Task] = pump_until_final(core, worker, ids)
    assert all(t.status is TaskStatus.SUCCEEDED and t.attempts == 1 for t in tasks)
    starts = [started[tid][0] for tid in ids]
    early = [(i, round(due[i] - s)) for i, s in enumerate(starts) if s < due[i]]
    assert early == [], f"(task, ms before its token): {early}"
    # Token spacing 200 ms, less what a claim's latency may vary by, for the tokens due
    # after the enqueue returned (the first can only start once their message is sent).
    # Before the sleep, with SQS delays rounded up, each second's tokens started together
    # up to a second late.
    punctual = sorted(s for i, s in enumerate(starts) if due[i] >= sent_ms)
    gaps = [round(b - a) for a, b in itertools.pairwise(punctual)]
    late = [round(s - d) for s, d in zip(starts, due, strict=True)]
    assert len(punctual) >= 15 and min(gaps) >= 100, f"gaps (ms) {gaps}, late by (ms) {late}"


def test_a_stopping_worker_gives_a_task_waiting_for_its_token_back_unspent(
    core: Enqueuer, tmp_path: Path
) -> None:
    log = tmp_path / "starts.log"
    request = TaskRequest(
        name="stamp", payload={"path": str(log)}, rate_limit="1/s", rate_limit_key="api"
    )
    ids = [r.task.id for r in core.enqueue_many([request] * 2)]
    due = tokens(core, "key:default:api", 2, 1000)
    worker = Worker(core.store, core.transport, InlineRunner())
    # Set as a poller's SIGTERM sets it: the second task's sleep towards its token (a
    # second away, so its message came at once) ends there.
    worker.stopping.set()
    outcomes: dict[str, str] = {}
    while len(outcomes) < 2:
        for d in core.transport.receive("default", 10, 1, 30):
            disposition = worker.process(d)
            apply(core, d, disposition)
            outcomes[d.body] = f"{disposition.action.value} {disposition.status}"
    assert sorted(outcomes.values()) == ["ack succeeded", f"{Action.RELEASE.value} released"]
    second = core.store.get(ids[1])
    assert second is not None and (second.status, second.attempts) == (TaskStatus.QUEUED, 0)
    # The message went back as it came, its token in it: a worker starts it then.
    worker.stopping.clear()
    [done] = pump_until_final(core, worker, [ids[1]])
    assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert stamps(log)[ids[1]][0] >= due[1]
