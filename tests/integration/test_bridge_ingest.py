"""The ingest Lambda handler fed recorded Amazon MQ and Kafka events, against moto.

The events under tests/fixtures/events/ are shaped as AWS documents them (Lambda
developer guide: with-mq, with-msk, with-kafka); their bodies are TaskRequests, some
repeated, some invalid.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stratoq.adapters import aws
from stratoq.core.errors import EnqueueError
from stratoq.core.models import Task, TaskStatus
from stratoq.core.settings import Settings
from stratoq.handlers.edge import entry
from stratoq.handlers.ingest import IngestFunction
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer

EVENTS = Path(__file__).resolve().parents[1] / "fixtures" / "events"
Handler = Callable[[dict[str, Any]], dict[str, int]]


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def tasks_of(core: Enqueuer, tenant: str) -> list[Task]:
    tasks, _ = core.store.list_tasks(tenant, limit=1000)
    return sorted(tasks, key=lambda t: json.dumps(t.payload, sort_keys=True))


@pytest.fixture
def handler(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Handler]:
    """The handler in-process as Lambda runs it: settings from the environment."""
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STRATOQ_BRIDGE_TENANT", "acme")
    # A cold start with this test's settings, read from the environment as on Lambda.
    return lambda e: entry(IngestFunction, Services.from_env)(e, None)


def test_msk_batch_enqueues_valid_records_once_and_skips_invalid_ones(
    handler: Handler, core: Enqueuer
) -> None:
    # Valid: offsets 0/15, 0/18 and 1/3; 1/5 repeats 0/18's own idempotency key.
    # Invalid: 0/16 (not JSON), 0/17 (no name), 1/4 (unknown queue).
    assert handler(event("msk.json")) == {"enqueued": 3, "duplicates": 1, "skipped": 3}
    tasks = tasks_of(core, "acme")
    assert [t.payload for t in tasks] == [{"order": 1}, {"order": 4}, {"order": 5}]
    assert all(t.status is TaskStatus.QUEUED for t in tasks)
    assert tasks[2].priority == "high" and tasks[2].max_attempts == 2
    keys = {t.payload["order"]: t.idempotency_key for t in tasks}
    assert keys[4] == "order-4"  # the body's own key wins over the broker identity
    assert keys[1] == "kafka:orders/0/15/1545084650987"
    assert tasks_of(core, "default") == []  # the bridge's tenant only

    # The event source mapping delivers the same batch again (e.g. after a timeout).
    assert handler(event("msk.json")) == {"enqueued": 0, "duplicates": 4, "skipped": 3}
    assert [t.id for t in tasks_of(core, "acme")] == [t.id for t in tasks]


def test_self_managed_kafka_event(handler: Handler, core: Enqueuer) -> None:
    # 0/17 asks for a negative delay: skipped, the other two enqueued (one delayed).
    assert handler(event("self-managed-kafka.json")) == {
        "enqueued": 2,
        "duplicates": 0,
        "skipped": 1,
    }
    tasks = tasks_of(core, "acme")
    assert [(t.payload, t.status) for t in tasks] == [
        ({"n": 1}, TaskStatus.QUEUED),
        ({"n": 2}, TaskStatus.SCHEDULED),
    ]


def test_a_recreated_topic_does_not_pass_for_the_old_one(handler: Handler, core: Enqueuer) -> None:
    handler(event("self-managed-kafka.json"))
    again = event("self-managed-kafka.json")
    # Same topic, partition and offset, but a later record (the topic was recreated).
    again["records"]["mytopic-0"][0]["timestamp"] += 86_400_000
    assert handler(again)["enqueued"] == 1


def test_amazon_mq_rabbitmq_event(handler: Handler, core: Enqueuer) -> None:
    # inv-A twice (a publisher's retry), B twice without message_id (a redelivery),
    # inv-C truncated JSON.
    assert handler(event("amazon-mq-rabbitmq.json")) == {
        "enqueued": 2,
        "duplicates": 2,
        "skipped": 1,
    }
    tasks = tasks_of(core, "acme")
    assert [t.payload for t in tasks] == [{"invoice": "A"}, {"invoice": "B"}]
    assert tasks[0].idempotency_key == "amqp:invoices::/#inv-A"
    assert tasks[1].idempotency_key is not None
    assert tasks[1].idempotency_key.startswith("amqp:sha256:")


def test_enqueue_failure_fails_the_invocation_and_the_retry_enqueues_once(
    handler: Handler, core: Enqueuer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    good_queues = settings.to_env()["STRATOQ_QUEUES"]
    # SQS refuses the send (no such queue): the batch must not count as handled.
    missing = f"{settings.aws_endpoint_url}/123456789012/no-such-queue"
    broken = ",".join(
        f"{name}={missing}" for name in (s.split("=", 1)[0] for s in good_queues.split(","))
    )
    monkeypatch.setenv("STRATOQ_QUEUES", broken)
    with pytest.raises(EnqueueError):
        handler(event("amazon-mq-rabbitmq.json"))
    # Messages go first (docs/architecture.md, "The enqueue gap"): nothing was stored.
    assert tasks_of(core, "acme") == []

    # The mapping delivers the batch again, now that SQS takes messages.
    monkeypatch.setenv("STRATOQ_QUEUES", good_queues)
    assert handler(event("amazon-mq-rabbitmq.json")) == {
        "enqueued": 2,
        "duplicates": 2,
        "skipped": 1,
    }
    tasks = tasks_of(core, "acme")
    assert [t.payload for t in tasks] == [{"invoice": "A"}, {"invoice": "B"}]
    # Their messages were sent this time: the tasks run.
    received = aws.sqs(core.settings).receive_message(
        QueueUrl=core.transport.url("default"), MaxNumberOfMessages=10
    )["Messages"]
    assert {json.loads(m["Body"])["id"] for m in received} == {t.id for t in tasks}


def test_an_event_from_another_source_is_refused(handler: Handler) -> None:
    with pytest.raises(ValueError, match="unsupported event source"):
        handler({"Records": [{"eventSource": "aws:sqs"}]})


def test_undecodable_data_is_skipped_not_fatal(handler: Handler, core: Enqueuer) -> None:
    e = copy.deepcopy(event("amazon-mq-rabbitmq.json"))
    batch = e["rmqMessagesByQueue"]["invoices::/"]
    batch[0]["data"] = "%%% not base64 %%%"
    batch[2]["data"] = base64.b64encode(b"\xff\xfe binary").decode()
    result = handler(e)
    # A (index 1, a valid copy) and B (index 3) remain; three are skipped.
    assert result == {"enqueued": 2, "duplicates": 0, "skipped": 3}


def test_an_oversized_payload_is_skipped_and_does_not_block_the_batch(
    handler: Handler, core: Enqueuer
) -> None:
    # Over the 256 KiB per-task limit (under DynamoDB's 400 KB, which the core must not
    # be left to find out: a refused write would fail the whole batch, again and again).
    e = copy.deepcopy(event("amazon-mq-rabbitmq.json"))
    batch = e["rmqMessagesByQueue"]["invoices::/"]
    big = {"name": "echo", "payload": {"blob": "x" * (300 * 1024)}}
    batch[1]["data"] = base64.b64encode(json.dumps(big).encode()).decode()
    result = handler(e)
    assert result["skipped"] == 2  # the oversized one and the fixture's invalid one
    assert result["enqueued"] >= 1
    assert all(len(json.dumps(t.payload)) < 1024 for t in tasks_of(core, "acme"))
