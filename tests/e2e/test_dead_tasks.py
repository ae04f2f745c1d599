"""Deduplication and dead tasks through the dev stack: HTTP, the SDK and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratoq import Client
from stratoq.core.models import TaskStatus
from stratoq.sdk.client import ApiError
from tests.e2e.conftest import DevStack, key_for


# ------------------------------------------------------------ deduplication
def test_unique_tasks_over_http(dev: DevStack) -> None:
    first_status, first = dev.request(
        "POST", "/v1/tasks", {"name": "echo", "payload": {"a": 1, "b": 2}, "unique": True}
    )
    again_status, again = dev.request(
        "POST",
        "/v1/tasks",
        {"name": "echo", "payload": {"b": 2, "a": 1}, "unique": True, "priority": "high"},
    )
    assert (first_status, again_status) == (202, 200)
    assert again["id"] == first["id"]
    assert first["idempotency_key"].startswith("unique:")


def test_batches_deduplicate_within_and_across(dev: DevStack, client: Client) -> None:
    tasks = [
        {"name": "echo", "payload": {"x": 1, "y": 2}, "unique": True},
        {"name": "echo", "payload": {"y": 2, "x": 1}, "unique": True},
        {
            "name": "echo",
            "payload": 3,
            "idempotency_key": "batch-k",
            "idempotency_window_seconds": 60,
        },
        {"name": "echo", "payload": 4, "idempotency_key": "batch-k"},
        {"name": "echo", "payload": 5},
    ]
    status, body = dev.request("POST", "/v1/tasks/batch", {"tasks": tasks})
    assert status == 202, body
    ids = [t["id"] for t in body["tasks"]]
    assert body["created"] == [True, False, True, False, True]
    assert ids[1] == ids[0] and ids[3] == ids[2]
    # The SDK's batch, repeated: the keyed entries name the same tasks, uncreated.
    again = client.enqueue_batch(tasks)
    assert [s.created for s in again] == [False, False, False, False, True]
    assert [s.task.id for s in again][:4] == ids[:4]
    assert client.wait(ids[2], timeout=30).result == 3


def test_cli_enqueue_unique(dev: DevStack) -> None:
    runs = [
        dev.cli("enqueue", "echo", "--payload", payload, "--unique", "--idempotency-window", "600")
        for payload in ('{"cli": 1, "z": 0}', '{"z": 0, "cli": 1}')
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["id"] == second["id"]
    both = dev.cli("enqueue", "echo", "--unique", "--idempotency-key", "k")
    assert both.returncode == 2
    assert "unique" in both.stderr and "Traceback" not in both.stderr


# ------------------------------------------------------------- failed tasks
def test_every_failed_task_is_listed_and_retried_in_bulk(
    dev: DevStack, client: Client, tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    made = client.enqueue_many(
        [{"name": "fail_while", "payload": {"path": str(flag), "i": i}} for i in range(12)]
    )
    for t in made:
        assert client.wait(t.id, timeout=60).status is TaskStatus.FAILED
    # More failed tasks than one page: following next_token finds every one once.
    seen: list[str] = []
    token = None
    while True:
        page = client.list("failed", "fail_while", 5, token)
        seen.extend(t.id for t in page)
        token = page.next_token
        if not token:
            break
    assert {t.id for t in made} <= set(seen)
    assert len(seen) == len(set(seen))

    flag.unlink()
    out = dev.cli("retry", "--failed", "--name", "fail_while")
    assert out.returncode == 0, out.stderr
    assert "retried 12 failed task(s)" in out.stdout
    for t in made:
        done = client.wait(t.id, timeout=60)
        assert (done.status, done.attempts) == (TaskStatus.SUCCEEDED, 1)
    assert dev.cli("retry").returncode == 2  # neither an id nor --failed


# --------------------------------------------------------------------- DLQ
def dead_letter_url(dev: DevStack) -> str:
    sqs = dev.sqs()
    [url] = [u for u in sqs.list_queues().get("QueueUrls", []) if u.endswith("-default-dlq")]
    return str(url)


def test_cli_redrives_the_dlq(dev: DevStack, client: Client, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    failed = client.enqueue("fail_while", {"path": str(flag)})
    assert client.wait(failed.id, timeout=30).status is TaskStatus.FAILED
    done = client.wait(client.enqueue("echo", "finished").id, timeout=30)
    url = dead_letter_url(dev)
    sqs = dev.sqs()
    for task_id in (failed.id, done.id):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": task_id, "t": "default"}))
    listed = dev.cli("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "default" in listed.stdout and "dead-letter 2" in listed.stdout
    flag.unlink()

    out = dev.cli("dlq", "redrive", "--queue", "default", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["redriven"], report["dropped"], report["more"]) == (1, 1, False)
    finished = client.wait(failed.id, timeout=30)
    assert (finished.status, finished.attempts) == (TaskStatus.SUCCEEDED, 1)


def test_redrive_is_for_the_operator_only(dev: DevStack) -> None:
    tenant_admin = key_for(dev, "acme", "admin")
    with pytest.raises(ApiError) as info:
        Client(dev.api_url, tenant_admin).redrive("default")
    assert info.value.status == 403
    out = dev.cli("--api-key", tenant_admin, "--api-url", dev.api_url, "dlq", "redrive")
    assert out.returncode == 3
    assert "operator" in out.stderr


def test_redrive_input_is_checked(dev: DevStack) -> None:
    status, body = dev.request("POST", "/v1/queues/default/redrive", {"max_messages": 0})
    assert status == 422
    assert [e["field"] for e in body["errors"]] == ["max_messages"]
    status, body = dev.request("POST", "/v1/queues/nope/redrive")
    assert status == 404, body
    status, body = dev.request("POST", "/v1/queues/default/redrive")  # no body: defaults
    assert status == 200, body
    assert dev.cli("dlq", "redrive", "--max", "0").returncode == 2
