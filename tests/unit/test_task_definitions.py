"""`@stratoq.task`: options as request defaults, typed payloads, `.enqueue` and handles.

The thing under test is the SDK's task object and the core's pure functions; the client
here is a recording stand-in (the real one is exercised in tests/e2e/test_task_functions.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field

import stratoq
from stratoq.core import payloads, registry
from stratoq.core.errors import ConfigError, InvalidPayloadError
from stratoq.core.models import Backoff, Priority, Task, TaskRequest, TaskStatus
from stratoq.core.registry import TaskOptions, apply_options, deployment_defaults
from stratoq.core.settings import Settings
from stratoq.sdk.tasks import TaskHandle, default_client, use_client

DEPLOYMENT = TaskOptions(max_attempts=5, timeout_seconds=300)
TASK = TaskOptions(
    queue="reports", priority="high", max_attempts=3, timeout_seconds=30, backoff=Backoff()
)


# --------------------------------------------------------------- apply_options
def test_a_request_with_only_a_name_takes_the_tasks_options() -> None:
    got = apply_options(TaskRequest.model_validate({"name": "t"}), TASK, DEPLOYMENT)
    assert (got.queue, got.priority, got.max_attempts, got.timeout_seconds) == (
        "reports",
        Priority.HIGH,
        3,
        30,
    )
    assert got.backoff == Backoff()


def test_fields_the_caller_set_win_even_when_equal_to_the_models_default() -> None:
    explicit = {"queue": "default", "priority": "default", "max_attempts": 9, "backoff": {}}
    got = apply_options(TaskRequest.model_validate({"name": "t", **explicit}), TASK, DEPLOYMENT)
    assert (got.queue, got.priority, got.max_attempts) == ("default", Priority.DEFAULT, 9)
    assert got.timeout_seconds == 30  # not given: the task's


def test_the_deployment_fills_what_the_task_leaves_open_and_null_counts_as_unset() -> None:
    request = TaskRequest.model_validate({"name": "t", "timeout_seconds": None})
    got = apply_options(request, TaskOptions(max_attempts=2), DEPLOYMENT)
    assert (got.max_attempts, got.timeout_seconds, got.queue) == (2, 300, "default")
    again = apply_options(got, TASK, DEPLOYMENT)  # what it filled now counts as set
    assert (again.max_attempts, again.timeout_seconds) == (2, 300)
    assert deployment_defaults(Settings(default_max_attempts=7)).max_attempts == 7


def test_task_options_are_checked_when_the_task_is_defined() -> None:
    with pytest.raises(ConfigError, match=r"'bad_opts': option max_attempts"):
        stratoq.task("bad_opts", max_attempts=0)(lambda p: p)
    assert registry.get("bad_opts") is None


# ------------------------------------------------------------ typed payloads
class Item(BaseModel):
    sku: str
    qty: int = Field(ge=1)


class Order(BaseModel):
    order_id: str = Field(alias="orderId")
    items: list[Item]


def typed(order: Order) -> int:
    return len(order.items)


def untyped(payload: Any) -> Any:
    return payload


def later(payload: Defined) -> Any:  # a model defined below its handler
    return payload


class Defined(BaseModel):
    x: int


def test_the_model_is_the_first_parameters_annotation() -> None:
    assert payloads.payload_model(typed) is Order
    assert payloads.payload_model(later) is Defined
    assert payloads.payload_model(untyped) is None
    assert payloads.payload_model(lambda p: p) is None


def test_validation_names_every_field_at_fault_from_the_root() -> None:
    bad = {"orderId": "o1", "items": [{"sku": "a", "qty": 1}, {"qty": 0}]}
    with pytest.raises(InvalidPayloadError) as caught:
        payloads.validate_payload(Order, bad, "tasks[2].payload")
    assert [f for f, _ in caught.value.problems] == [
        "tasks[2].payload.items.1.sku",
        "tasks[2].payload.items.1.qty",
    ]
    assert caught.value.field == "tasks[2].payload.items.1.sku"
    assert "tasks[2].payload.items.1.qty: Input should be greater than or equal to 1" in str(
        caught.value
    )
    with pytest.raises(InvalidPayloadError) as not_an_object:
        payloads.validate_payload(Order, 5)
    assert not_an_object.value.field == "payload"


def test_a_model_travels_by_alias_and_comes_back_equal() -> None:
    order = Order(orderId="o1", items=[Item(sku="a", qty=2)])
    sent = payloads.to_json(order)
    assert sent == {"orderId": "o1", "items": [{"sku": "a", "qty": 2}]}
    assert payloads.validate_payload(Order, sent) == order
    assert payloads.result_value(order) == sent
    assert payloads.result_value([1]) == [1]


# -------------------------------------------------------------- TaskFunction
class Recorder:
    """A client that answers every call from memory and records the requests."""

    def __init__(self, final: TaskStatus = TaskStatus.SUCCEEDED, result: Any = None) -> None:
        self.sent: list[TaskRequest] = []
        self.final = final
        self.result = result

    def _task(self, status: TaskStatus, request: TaskRequest | None = None) -> Task:
        return Task(
            id="t1",
            name=request.name if request else "unit_order",
            status=status,
            result=self.result if status is TaskStatus.SUCCEEDED else None,
            max_attempts=1,
            timeout_seconds=1,
            created_at=datetime.now(UTC),
        )

    def enqueue_request(self, request: TaskRequest) -> Task:
        self.sent.append(request)
        return self._task(TaskStatus.QUEUED, request)

    def get(self, task_id: str) -> Task:
        return self._task(TaskStatus.QUEUED)

    def wait(self, task_id: str, timeout: float) -> Task:
        return self._task(self.final)


@stratoq.task("unit_order", queue="orders", max_attempts=2)
def unit_order(order: Order) -> int:
    return len(order.items)


@stratoq.task
def unit_plain(payload: Any) -> Any:
    return payload


def test_calling_the_task_calls_the_function_and_the_worker_finds_it() -> None:
    assert unit_order(Order(orderId="o", items=[])) == 0
    assert (unit_plain.name, unit_plain.__name__, unit_plain("x")) == (
        "unit_plain",
        "unit_plain",
        "x",
    )
    assert registry.get("unit_order") is unit_order.fn
    assert (
        registry.options("unit_order")
        == unit_order.options
        == TaskOptions(queue="orders", max_attempts=2)
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda t, c: t.enqueue(orderId="o1", items=[{"sku": "a", "qty": 1}], client=c),
        lambda t, c: t.enqueue({"orderId": "o1", "items": [{"sku": "a", "qty": 1}]}, client=c),
        lambda t, c: t.enqueue(Order(orderId="o1", items=[Item(sku="a", qty=1)]), client=c),
    ],
)
def test_enqueue_sends_the_models_json_and_the_tasks_options(call: Any) -> None:
    client = Recorder()
    handle = call(unit_order, client)
    assert isinstance(handle, TaskHandle) and handle.id == "t1" and handle.client is client
    [sent] = client.sent
    assert sent.model_dump(mode="json", exclude_unset=True) == {
        "name": "unit_order",
        "payload": {"orderId": "o1", "items": [{"sku": "a", "qty": 1}]},
        "queue": "orders",
        "max_attempts": 2,
    }


def test_with_options_overrides_the_tasks_options_for_that_copy_only() -> None:
    client = Recorder()
    when = datetime(2030, 1, 1, tzinfo=UTC)
    urgent = unit_order.with_options(queue="default", priority="high").with_options(run_at=when)
    urgent.enqueue(orderId="o", items=[], client=client)
    unit_order.enqueue(orderId="o", items=[], client=client)
    first, second = client.sent
    assert (first.queue, first.priority, first.run_at, first.max_attempts) == (
        "default",
        Priority.HIGH,
        when,
        2,
    )
    assert (second.queue, second.priority, second.run_at) == ("orders", Priority.DEFAULT, None)
    with pytest.raises(TypeError, match="no field 'retries'"):
        unit_order.with_options(retries=3)


def test_a_bad_payload_or_field_is_refused_before_anything_is_sent() -> None:
    client = Recorder()
    with pytest.raises(stratoq.InvalidRequestError) as caught:
        unit_order.enqueue({"orderId": "o1", "items": [{"sku": "a"}]}, client=client)
    assert caught.value.field == "payload.items.0.qty"
    with pytest.raises(stratoq.InvalidRequestError) as bad_field:
        unit_plain.with_options(priority="urgent").enqueue(client=client)
    assert bad_field.value.field == "priority"
    with pytest.raises(TypeError, match="not both"):
        unit_plain.enqueue({"a": 1}, b=2, client=client)
    assert client.sent == []


def test_an_untyped_task_sends_its_payload_as_given() -> None:
    client = Recorder()
    unit_plain.enqueue("hi", client=client)
    unit_plain.enqueue(x=1, client=client)
    unit_plain.enqueue(client=client)
    unit_plain.enqueue(Item(sku="s", qty=1), client=client)
    assert [r.payload for r in client.sent] == ["hi", {"x": 1}, None, {"sku": "s", "qty": 1}]


def test_use_client_is_the_default_inside_its_block_only() -> None:
    outer, inner = Recorder(), Recorder()
    with use_client(outer):
        unit_plain.enqueue(1)
        with use_client(inner):
            assert default_client() is inner
            unit_plain.enqueue(2)
        unit_plain.enqueue(3)
    assert [r.payload for r in outer.sent] == [1, 3]
    assert [r.payload for r in inner.sent] == [2]


def test_result_returns_or_raises_by_the_final_status() -> None:
    assert TaskHandle("t1", Recorder(result={"n": 1})).result(timeout=1) == {"n": 1}
    for status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        with pytest.raises(stratoq.TaskFailed) as caught:
            TaskHandle("t1", Recorder(final=status)).result(timeout=1)
        assert caught.value.task.status is status
    with pytest.raises(TimeoutError, match="still queued"):
        TaskHandle("t1", Recorder(final=TaskStatus.QUEUED)).result(timeout=1)
