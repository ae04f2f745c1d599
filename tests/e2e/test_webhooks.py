"""Webhooks on the dev stack (issue 21, item 4): every event of 200 tasks reaches a
receiver while a poller is killed -9; a receiver that answers 500 is retried, then its
events are dead-lettered; the CLI manages webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoq import Client
from stratoq.core.settings import Settings
from stratoq.local.provision import provision
from stratoq.webhooks import verify
from tests.e2e.conftest import DevStack, start_dev, stop_dev
from tests.support.procs import stratoq, wait_for
from tests.support.receiver import receiver

FAST = {
    "STRATOQ_LEASE_SECONDS": "3",
    "STRATOQ_METRICS_PORT": "0",
    "STRATOQ_WEBHOOK_CACHE_SECONDS": "0",
    "STRATOQ_WEBHOOK_RETRY_SECONDS": "1",
    "STRATOQ_WEBHOOK_MAX_ATTEMPTS": "3",
}


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    # No poller slots in the stack: the test's own pollers run the tasks.
    stack = start_dev(tmp_path_factory.mktemp("dev"), "--workers", "0", env_extra=FAST)
    try:
        yield stack
    finally:
        assert stop_dev(stack) == 0, stack.log.read_text()[-3000:]


@pytest.mark.timeout(240)
def test_every_event_of_200_tasks_arrives_while_a_poller_is_killed(
    dev: DevStack, tmp_path: Path
) -> None:
    client = Client(dev.api_url, dev.api_key)
    settings = provision(
        Settings(aws_endpoint_url=dev.aws_endpoint_url, tasks_module="tests.support.tasks")
    )
    with receiver() as got:
        hook = client.create_webhook(got.url)
        path = str(tmp_path / "effects")
        with stratoq(settings, tmp_path, "worker", "-c", "4", env=FAST) as victim:
            batch = [{"name": "record", "payload": {"path": path, "sleep": 0.1}}] * 200
            ids = [t.id for t in client.enqueue_many(batch)]
            wait_for(
                lambda: sum(e["type"] == "task.started" for e in got.events()) >= 20, 60, "starts"
            )
            victim.kill_hard()  # SIGKILL: its claims' leases lapse, its events unsent
        with stratoq(settings, tmp_path, "worker", "-c", "4", env=FAST):
            for task_id in ids:
                assert client.wait(task_id, timeout=120).status.value == "succeeded"
            tasks = {t: client.get(t) for t in ids}
            wanted = {
                f"{t}:{kind}"
                for t, task in tasks.items()
                for kind in ("queued:0", f"started:{task.attempts}", f"succeeded:{task.attempts}")
            }
            wait_for(lambda: got.ids() >= wanted, 60, "every event")
        for headers, body in got.requests:
            verify(hook["secret"], headers, body)


@pytest.mark.timeout(120)
def test_a_failing_receiver_is_retried_then_dead_lettered(dev: DevStack) -> None:
    client = Client(dev.api_url, dev.api_key)
    with receiver(status=500) as got:
        made = dev.cli("webhooks", "create", got.url, "--events", "queued")
        assert made.returncode == 0, made.stderr
        hook_id = made.stderr.split()[1]
        assert hook_id in dev.cli("webhooks", "list").stdout
        task = client.enqueue("echo", {})
        failures = wait_for(
            lambda: client.webhook_failures(hook_id)["failures"], 60, "a dead-letter record"
        )
        assert len(got.requests) == 3  # STRATOQ_WEBHOOK_MAX_ATTEMPTS
        assert failures[0]["event"]["id"] == f"{task.id}:queued:0"
        assert failures[0]["last_answer"] == 500
        shown = dev.cli("webhooks", "failures", hook_id)
        assert shown.returncode == 0 and task.id in shown.stdout
        assert dev.cli("webhooks", "delete", hook_id).returncode == 0
        assert hook_id not in dev.cli("webhooks", "list").stdout


def test_the_cli_refuses_bad_webhooks(dev: DevStack) -> None:
    bad = dev.cli("webhooks", "create", "https://example.com/hook", "--events", "exploded")
    assert bad.returncode == 2 and "--events" in bad.stderr and "Traceback" not in bad.stderr
    bad = dev.cli("webhooks", "create", "example.com/hook")
    assert bad.returncode == 2 and "URL" in bad.stderr
    # Plain http beyond this machine: the API refuses it (exit 3), naming the field.
    refused = dev.cli("webhooks", "create", "http://example.com/hook")
    assert refused.returncode == 3 and "url must be https://" in refused.stderr
