"""`stratoq bridge rabbitmq` as a real process, between a real RabbitMQ and the stack
on the emulator: tasks are enqueued once, and messages are acknowledged only after."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratoq.adapters import aws
from stratoq.core.models import Task, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer
from tests.conftest import PYTHON, subprocess_env
from tests.support.procs import Proc, stratoq, wait_for
from tests.support.rabbitmq import Rabbit, free_port, rabbitmq_server

# In every payload: the bridge's output must never contain it.
MARKER = "payload-not-for-logs"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rabbit]:
    with rabbitmq_server(tmp_path_factory.mktemp("rabbitmq")) as server:
        yield server


def task_body(n: int, **extra: Any) -> bytes:
    return json.dumps({"name": "echo", "payload": {"n": n, "note": MARKER}, **extra}).encode()


def tasks_of(core: Enqueuer, tenant: str) -> list[Task]:
    tasks, _ = core.store.list_tasks(tenant, limit=1000)
    return sorted(tasks, key=lambda t: t.payload["n"])


def log_lines(proc: Proc) -> list[dict[str, Any]]:
    lines = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def batch_totals(proc: Proc) -> dict[str, int]:
    totals = {"enqueued": 0, "duplicates": 0, "skipped": 0}
    for line in log_lines(proc):
        if line.get("message") == "broker batch enqueued":
            for key in totals:
                totals[key] += line[key]
    return totals


def wait_reported(proc: Proc, want: dict[str, int], timeout: float = 60) -> None:
    try:
        wait_for(lambda: batch_totals(proc) == want, timeout, f"the bridge to report {want}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; it said:\n{proc.output()[-4000:]}") from None


def bridge_args(rabbit: Rabbit, queue: str, *extra: str) -> tuple[str, ...]:
    return ("bridge", "rabbitmq", "--url", rabbit.url, "--queue", queue, *extra)


def stop(proc: Proc, sig: int = signal.SIGTERM) -> None:
    proc.signal(sig)
    assert proc.wait(30) == 0, proc.output()[-3000:]


def test_each_message_becomes_one_task_and_every_message_is_acked(
    rabbit: Rabbit, settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    queue = "bridge-once"
    rabbit.declare(queue)
    # Waiting before the bridge starts: four tasks, one of them without a message_id,
    # and a body that is not JSON.
    for n in range(3):
        rabbit.publish(queue, task_body(n), message_id=f"m{n}")
    rabbit.publish(queue, task_body(3))
    rabbit.publish(queue, b"{not json " + MARKER.encode(), message_id="bad-json")

    env = {"STRATOQ_BRIDGE_TENANT": "acme"}
    with stratoq(settings, tmp_path, *bridge_args(rabbit, queue, "--prefetch", "3"), env=env) as p:
        wait_for(lambda: len(tasks_of(core, "acme")) == 4, 60, "the first four tasks")
        # While it runs: two more, m1 again (a publisher retrying), and a body that is
        # JSON but no TaskRequest.
        rabbit.publish(queue, task_body(4), message_id="m4")
        rabbit.publish(queue, task_body(1), message_id="m1")
        rabbit.publish(queue, json.dumps({"payload": MARKER}).encode(), message_id="no-name")
        rabbit.publish(queue, task_body(5), message_id="m5")
        wait_reported(p, {"enqueued": 6, "duplicates": 1, "skipped": 2})
        stop(p)

    # Stopped, nothing left unacknowledged: everything was acked, nothing handed back.
    assert rabbit.ready(queue) == 0
    tasks = tasks_of(core, "acme")
    assert [t.payload["n"] for t in tasks] == [0, 1, 2, 3, 4, 5]
    assert all(t.status is TaskStatus.QUEUED for t in tasks)
    assert tasks[1].idempotency_key == f"amqp:{queue}::/#m1"
    assert (tasks[3].idempotency_key or "").startswith("amqp:sha256:")
    out = p.output()
    assert MARKER not in out  # logs name where a message came from, never its content
    skipped = [x for x in log_lines(p) if x.get("message") == "broker message skipped"]
    assert sorted(x["reason"] for x in skipped) == ["invalid_json", "invalid_request"]
    stopped = [x for x in log_lines(p) if x.get("message") == "bridge stopped"]
    assert stopped and stopped[0]["enqueued"] == 6


def test_a_message_stays_in_rabbitmq_until_its_task_is_enqueued(
    rabbit: Rabbit, settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    queue = "bridge-unacked"
    rabbit.declare(queue)
    rabbit.publish(queue, task_body(7), message_id="m7")

    # Every SQS queue the bridge knows is missing: the send fails, so nothing is stored
    # (messages go first: docs/architecture.md, "The enqueue gap").
    env = dict(settings.to_env())
    missing = f"{settings.aws_endpoint_url}/123456789012/no-such-queue"
    env["STRATOQ_QUEUES"] = ",".join(
        f"{spec.split('=', 1)[0]}={missing}" for spec in env["STRATOQ_QUEUES"].split(",")
    )
    with stratoq(settings, tmp_path, *bridge_args(rabbit, queue), env=env) as p:
        wait_for(lambda: "handed back to the queue" in p.output(), 60, "a failed enqueue")
        stop(p)
    # Not acknowledged: RabbitMQ still has it (back in the queue once the consumer left).
    wait_for(lambda: rabbit.ready(queue) == 1, 10, "the message back in its queue")

    assert tasks_of(core, "default") == []

    # Started again with SQS reachable: the redelivery enqueues the task (message, then
    # record), and only then acknowledges.
    with stratoq(settings, tmp_path, *bridge_args(rabbit, queue)) as p:
        wait_reported(p, {"enqueued": 1, "duplicates": 0, "skipped": 0})
        stop(p, signal.SIGINT)  # Ctrl-C stops it as cleanly
    assert rabbit.ready(queue) == 0
    [task] = tasks_of(core, "default")
    assert task.payload["n"] == 7
    received = aws.sqs(core.settings).receive_message(
        QueueUrl=core.transport.url("default"), MaxNumberOfMessages=10
    )["Messages"]
    assert [json.loads(m["Body"])["id"] for m in received] == [task.id]


def test_the_bridge_outlives_its_queue_being_deleted_and_declared_again(
    rabbit: Rabbit, settings: Settings, core: Enqueuer, tmp_path: Path
) -> None:
    queue = "bridge-redeclared"
    rabbit.declare(queue)
    with stratoq(settings, tmp_path, *bridge_args(rabbit, queue)) as p:
        wait_for(lambda: "bridge consuming" in p.output(), 30, "the bridge to consume")
        with rabbit.channel() as ch:
            ch.queue_delete(queue)  # the broker cancels the bridge's consumer
        wait_for(lambda: "reconnect" in p.output(), 30, "the bridge to notice")
        rabbit.declare(queue)
        rabbit.publish(queue, task_body(9), message_id="m9")
        wait_reported(p, {"enqueued": 1, "duplicates": 0, "skipped": 0})
        assert p.popen.poll() is None
        stop(p)
    assert [t.payload["n"] for t in tasks_of(core, "default")] == [9]


def test_a_queue_that_does_not_exist_is_a_usage_error(rabbit: Rabbit, settings: Settings) -> None:
    done = run_cli(settings, *bridge_args(rabbit, "no-such-queue"))
    assert done.returncode == 2, done.stderr
    assert "queue 'no-such-queue' does not exist" in done.stderr
    assert "guest" not in done.stderr  # the URL's credentials are not echoed


# ------------------------------------------------------------------ bad input
def run_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "stratoq", *args],
        env=subprocess_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--queue", "q"), "give the broker with --url"),
        (("--url", "http://127.0.0.1/", "--queue", "q"), "must look like amqp://"),
        (("--url", "amqp://127.0.0.1:notaport/", "--queue", "q"), "URL is malformed"),
        (("--url", "amqp://127.0.0.1/", "--queue", "q", "--prefetch", "0"), "at least 1"),
        (("--url", "amqp://127.0.0.1/", "--queue", "q", "--linger", "0"), "--linger must be"),
    ],
)
def test_bad_input_exits_2_with_a_sentence(
    settings: Settings, args: tuple[str, ...], says: str
) -> None:
    done = run_cli(settings, "bridge", "rabbitmq", *args, STRATOQ_RABBITMQ_URL="")
    assert done.returncode == 2, done.stderr
    assert says in done.stderr


def test_an_unreachable_broker_is_a_usage_error(settings: Settings) -> None:
    url = f"amqp://user:s3cret@127.0.0.1:{free_port()}/%2F"
    done = run_cli(settings, "bridge", "rabbitmq", "--url", url, "--queue", "q")
    assert done.returncode == 2, done.stderr
    assert "cannot connect to RabbitMQ at amqp://127.0.0.1:" in done.stderr
    assert "s3cret" not in done.stderr
