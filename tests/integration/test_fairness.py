"""Tenant fairness on the emulator: messages carry their tenant as MessageGroupId, and a
receive hands a quiet tenant's messages out before a flooding tenant's backlog."""

from __future__ import annotations

import json
from typing import Any

from stratoq.adapters import aws
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support.procs import wait_for
from tests.support.pump import apply


def _receive(sqs: Any, url: str, wait: int = 0, visibility: int = 60) -> list[dict[str, Any]]:
    out = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait,
        VisibilityTimeout=visibility,
        MessageSystemAttributeNames=["MessageGroupId"],
    )
    return list(out.get("Messages", []))


def _tenant(message: dict[str, Any]) -> str:
    return str(json.loads(message["Body"])["t"])


def test_a_quiet_tenants_tasks_come_before_a_floods_backlog(core: Enqueuer) -> None:
    url = core.transport.url("default")
    sqs = core.transport.client
    core.enqueue_many([TaskRequest(name="echo")] * 500, tenant="flood")
    # Twenty of the flood's in flight (workers busy with them), then the quiet tenant's.
    in_flight = _receive(sqs, url) + _receive(sqs, url)
    assert [_tenant(m) for m in in_flight] == ["flood"] * 20
    quiet = {r.task.id for r in core.enqueue_many([TaskRequest(name="echo")] * 5, tenant="quiet")}
    got = _receive(sqs, url)
    # Behind 480 of the flood's in SQS arrival order; first in the next receive here.
    assert [_tenant(m) for m in got] == ["quiet"] * 5 + ["flood"] * 5
    assert {json.loads(m["Body"])["id"] for m in got[:5]} == quiet


def test_tenants_with_nothing_in_flight_take_turns(core: Enqueuer) -> None:
    url = core.transport.url("default")
    core.enqueue_many([TaskRequest(name="echo")] * 30, tenant="flood")
    core.enqueue_many([TaskRequest(name="echo")] * 3, tenant="quiet")
    got = [_tenant(m) for m in _receive(core.transport.client, url)]
    assert got == ["flood", "quiet"] * 3 + ["flood"] * 4


def test_every_message_stratoq_sends_carries_its_tenant_as_message_group(
    core: Enqueuer,
) -> None:
    url = core.transport.url("default")
    sqs = core.transport.client
    ids = {
        core.enqueue(TaskRequest(name="echo"), tenant="acme").task.id: "acme",
        core.enqueue(TaskRequest(name="retry_after", payload={"delay": 1})).task.id: "default",
    }
    sent = _receive(sqs, url, visibility=0)
    assert {json.loads(m["Body"])["id"]: m["Attributes"]["MessageGroupId"] for m in sent} == ids
    # A retry is sent again by the worker: still in its tenant's group.
    worker = Worker(core.store, core.transport, InlineRunner())
    [retried] = [d for d in core.transport.receive_url(url, 10, 0, 0) if "retry" in d.body]
    apply(core, retried, worker.process(retried))
    task_id = json.loads(retried.body)["id"]
    assert core.store.get(task_id).status is TaskStatus.RETRYING

    def retry_sent() -> list[dict[str, Any]]:
        return [m for m in _receive(sqs, url, wait=1) if json.loads(m["Body"])["id"] == task_id]

    again = wait_for(retry_sent, 10, "the retry's message")
    assert [m["Attributes"]["MessageGroupId"] for m in again] == ["default"]


def test_a_queue_without_groups_keeps_arrival_order(settings: Settings) -> None:
    sqs = aws.sqs(settings)
    url = sqs.create_queue(QueueName="no-groups")["QueueUrl"]
    for start in range(0, 30, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(start, start + 10)],
        )
    bodies = [int(m["Body"]) for _ in range(3) for m in _receive(sqs, url)]
    assert bodies == list(range(30))


def test_with_fair_queues_off_messages_carry_no_group(settings: Settings) -> None:
    # For an SQS that refuses group ids on standard queues (LocalStack before 4.7).
    off = Settings.from_env({**settings.to_env(), "STRATOQ_FAIR_QUEUES": "0"})
    assert not off.fair_queues and settings.fair_queues
    core = Services(off).enqueuer
    task_id = core.enqueue(TaskRequest(name="echo"), tenant="acme").task.id
    url = core.transport.url("default")
    [sent] = [
        m
        for m in _receive(core.transport.client, url, visibility=0)
        if json.loads(m["Body"])["id"] == task_id
    ]
    assert "MessageGroupId" not in sent.get("Attributes", {})
