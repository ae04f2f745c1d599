"""Task events and webhooks against the emulator (issue 21, item 4): the subscription
store, the events a worker sends (and sends again when a message comes back), signed
delivery with retries and dead letters, the EventBridge bus, and /v1/webhooks over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from stratoq import Client
from stratoq.core.clock import now_ms
from stratoq.core.events import Subscription
from stratoq.core.models import TaskRequest
from stratoq.core.settings import Settings
from stratoq.local.webhooks import LocalDeliverer
from stratoq.sdk.client import ApiError
from stratoq.services.app import Services
from stratoq.services.runner import InlineRunner
from stratoq.webhooks import verify
from tests.support.gateway import serve_api
from tests.support.pump import pump_until_final
from tests.support.receiver import receiver

SECRET = "whsec_integration-0123456789"


@pytest.fixture
def services(settings: Settings) -> Services:
    # Cache TTL 0: a subscription made by the test is seen at once (the TTL is unit-tested).
    return Services(
        settings.with_(
            webhook_cache_seconds=0,
            webhook_allow_local_http=True,
            webhook_max_attempts=2,
            webhook_retry_seconds=1,
        )
    )


def subscribe(services: Services, url: str, events: tuple[str, ...] = ()) -> Subscription:
    sub = Subscription(
        id="wh_test" + str(now_ms()),
        tenant="default",
        url=url,
        events=frozenset(events or ("queued", "started", "retrying", "succeeded", "failed")),
        secret=SECRET,
        created_at_ms=now_ms(),
    )
    services.webhooks.create(sub)
    return sub


def events_waiting(services: Services) -> int:
    url = services.settings.events_queue_url or ""
    attrs = services.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"])


@pytest.fixture
def delivering(services: Services) -> Iterator[Callable[[Callable[[], bool]], None]]:
    """Runs the dev stack's deliverer; `until(cond)` polls cond for 30 s."""
    import threading

    deliverer = LocalDeliverer(services)
    thread = threading.Thread(target=deliverer.run, daemon=True)
    thread.start()

    def until(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not cond():
            assert time.monotonic() < deadline, "condition not met within 30 s"
            time.sleep(0.05)

    yield until
    deliverer.stop()
    thread.join(10)


def test_no_webhook_no_event_message(services: Services) -> None:
    services.enqueuer.enqueue(TaskRequest(name="echo", payload={}))
    assert events_waiting(services) == 0


def test_a_webhook_gets_every_event_signed(
    services: Services, delivering: Callable[[Callable[[], bool]], None]
) -> None:
    with receiver() as got:
        subscribe(services, got.url)
        ids = [
            services.enqueuer.enqueue(TaskRequest(name=n, payload=p)).task.id
            for n, p in (("echo", {}), ("give_up", {}), ("retry_after", {"delay": 1}))
        ]
        pump_until_final(services.enqueuer, services.worker(InlineRunner()), ids)
        echo, give_up, retried = ids
        expected = {
            *(f"{echo}:{t}" for t in ("queued:0", "started:1", "succeeded:1")),
            *(f"{give_up}:{t}" for t in ("queued:0", "started:1", "failed:1")),
            *(f"{retried}:{t}" for t in ("queued:0", "started:1", "retrying:1")),
            *(f"{retried}:{t}" for t in ("started:2", "succeeded:2")),
        }
        delivering(lambda: got.ids() >= expected)
        assert got.ids() == expected
        for headers, body in got.requests:
            event = verify(SECRET, headers, body)
            assert headers["Stratoq-Event-Id"] == event["id"]


def test_a_message_delivered_again_sends_its_event_again(services: Services) -> None:
    """A worker that died after recording the outcome but before its message was
    acknowledged: the message comes back, and the event goes out again (same id)."""
    with receiver() as got:
        subscribe(services, got.url, ("succeeded",))
        task = services.enqueuer.enqueue(TaskRequest(name="echo", payload={})).task
        worker = services.worker(InlineRunner())
        [delivery] = services.transport.receive("default", 10, 1, 30)
        worker.process(delivery)  # recorded; not acknowledged: the worker "died"
        assert events_waiting(services) == 1
        services.sqs.purge_queue(QueueUrl=services.settings.events_queue_url or "")
        services.transport.change_visibility([(delivery, 0)])
        [again] = services.transport.receive("default", 10, 1, 30)
        assert worker.process(again).status == "duplicate"
        url = services.settings.events_queue_url or ""
        [message] = services.sqs.receive_message(QueueUrl=url)["Messages"]
        assert json.loads(message["Body"])["event"]["id"] == f"{task.id}:succeeded:1"


def test_a_failing_webhook_is_retried_then_dead_lettered(
    services: Services, delivering: Callable[[Callable[[], bool]], None]
) -> None:
    with receiver(status=500) as got:
        sub = subscribe(services, got.url, ("queued",))
        task = services.enqueuer.enqueue(TaskRequest(name="echo", payload={})).task
        delivering(lambda: bool(services.webhooks.failures("default", sub.id)[0]))
        [record], dropped = services.webhooks.failures("default", sub.id)
        assert len(got.requests) == 2  # webhook_max_attempts
        assert record["event"]["id"] == f"{task.id}:queued:0"
        assert record["last_answer"] == 500 and record["attempts"] == 2 and dropped == 0


def test_events_go_to_the_event_bus(services: Services, settings: Settings) -> None:
    sqs, events = services.sqs, services.events
    target = sqs.create_queue(QueueName="bus-target")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=target, AttributeNames=["QueueArn"])["Attributes"]
    bus = "stratoq-events"  # the template's bus, provisioned on the emulator
    events.put_rule(Name="all", EventBusName=bus, EventPattern=json.dumps({"source": ["stratoq"]}))
    events.put_targets(Rule="all", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn["QueueArn"]}])
    on_bus = Services(services.settings.with_(event_bus=bus))
    task = on_bus.enqueuer.enqueue(TaskRequest(name="echo", payload={})).task
    [message] = sqs.receive_message(QueueUrl=target, WaitTimeSeconds=1)["Messages"]
    body = json.loads(message["Body"])
    assert body["detail-type"] == "task.queued" and body["detail"]["task_id"] == task.id


def test_the_webhooks_api(settings: Settings) -> None:
    with serve_api(settings) as served:
        admin = Client(served.url, served.key)
        key, _ = served.services.keys.create("other", ["admin"], "test")
        other = Client(served.url, key)
        with pytest.raises(ApiError) as bad_url:
            admin.create_webhook("http://example.com/hook")
        assert bad_url.value.status == 400 and bad_url.value.errors[0]["field"] == "url"
        with pytest.raises(ApiError) as bad_events:
            admin.create_webhook("https://example.com/hook", events=["succeeded", "exploded"])
        assert bad_events.value.status == 400 and bad_events.value.errors[0]["field"] == "events"
        created = admin.create_webhook("https://example.com/hook", events=["failed"])
        assert created["secret"].startswith("whsec_") and created["events"] == ["failed"]
        listed = admin.list_webhooks()
        assert [w["id"] for w in listed] == [created["id"]] and "secret" not in listed[0]
        assert other.list_webhooks() == []
        with pytest.raises(ApiError) as elsewhere:
            other.delete_webhook(created["id"])
        assert elsewhere.value.status == 404
        assert admin.webhook_failures(created["id"]) == {"failures": [], "dropped": 0}
        assert admin.delete_webhook(created["id"])["deleted"] is True
        assert admin.list_webhooks() == []


def test_a_workflows_node_tasks_send_every_event_queued_included(
    services: Services, delivering: Callable[[Callable[[], bool]], None]
) -> None:
    from stratoq.core.workflows import chain, node_task_id
    from tests.support.pump import run_until_ended

    worker = services.worker(InlineRunner())
    with receiver() as got:
        subscribe(services, got.url)
        wf = services.workflows.submit(chain(("echo", 1), ("echo", 2)), "default")
        run_until_ended(services, worker, wf.id)
        nodes = [node_task_id(wf.id, i) for i in range(2)]
        expected = {f"{t}:{e}" for t in nodes for e in ("queued:0", "started:1", "succeeded:1")}
        delivering(lambda: got.ids() >= expected)
        assert got.ids() == expected


def test_cancelling_a_queued_task_sends_cancelled(services: Services) -> None:
    from stratoq.services.cancel import cancel_task

    with receiver() as got:
        subscribe(services, got.url, ("cancelled",))
        task = services.enqueuer.enqueue(TaskRequest(name="echo", payload={})).task
        cancel_task(
            services.store, services.metrics, task.id, "default", events=services.task_events
        )
        url = services.settings.events_queue_url or ""
        [message] = services.sqs.receive_message(QueueUrl=url)["Messages"]
        assert json.loads(message["Body"])["event"]["id"] == f"{task.id}:cancelled:0"


def test_the_events_function_delivers_a_batch_and_reports_failures(services: Services) -> None:
    from stratoq.handlers.events import EventsFunction
    from stratoq.local.esm import sqs_event

    url = services.settings.events_queue_url or ""
    arn = services.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    function = EventsFunction(services)
    for status, failures in ((200, 0), (500, 1)):
        with receiver(status=status) as got:
            subscribe(services, got.url, ("queued",))
            services.enqueuer.enqueue(TaskRequest(name="echo", payload={}))
            messages = services.sqs.receive_message(
                QueueUrl=url, MessageSystemAttributeNames=["ApproximateReceiveCount"]
            )["Messages"]
            event = sqs_event(arn["Attributes"]["QueueArn"], services.settings.region, messages)
            answer = function(event, None)
            assert len(answer["batchItemFailures"]) == failures
            assert len(got.requests) == 1
            for m in messages:  # the next round starts from an empty queue
                services.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            for sub in services.webhooks.of("default", consistent=True):
                services.webhooks.delete("default", sub.id)
