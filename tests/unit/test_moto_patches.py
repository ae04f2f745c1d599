"""The moto patches of the embedded emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import moto.sqs.models as sqs_models
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from stratoq.local import moto_patches
from stratoq.local.moto_patches import install
from tests.support.tables import hash_table


def test_delete_message_waits_for_the_queue_lock() -> None:
    # Stock moto rebuilds the message list on delete without the lock that sends append
    # under, so a message sent at that moment could vanish (seen: 8 of 20,000 tasks).
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue("patch-test")
    for i in range(3):
        backend.send_message("patch-test", f"m{i}")
    [message] = backend.receive_message("patch-test", 1, 0, 60)
    queue = backend.get_queue("patch-test")
    finished = threading.Event()

    def delete() -> None:
        backend.delete_message("patch-test", message.receipt_handle)
        finished.set()

    with queue._messages_lock:  # a send in progress holds this lock
        worker = threading.Thread(target=delete)
        worker.start()
        assert not finished.wait(0.3), "delete ran while a send held the queue lock"
    assert finished.wait(10)
    worker.join()
    assert len(queue._messages) == 2
    backend.delete_queue("patch-test")


def _backend_queue(name: str, bodies: int) -> tuple[Any, Any]:
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue(name)
    for i in range(bodies):
        backend.send_message(name, f"m{i}")
    return backend, backend.get_queue(name)


def test_delete_finds_a_message_by_any_of_its_handles_and_keeps_the_rest_in_order() -> None:
    backend, queue = _backend_queue("delete-test", 5)
    [first] = backend.receive_message("delete-test", 1, 0, 0)  # visible again at once
    old_handle = first.receipt_handle
    received = backend.receive_message("delete-test", 2, 0, 60)
    assert received[0].body == "m0" and received[0].receipt_handle != old_handle
    backend.delete_message("delete-test", old_handle)  # an earlier handle still deletes
    backend.delete_message("delete-test", old_handle)  # and deleting again is fine
    backend.delete_message("delete-test", received[1].receipt_handle)
    assert [m.body for m in queue._messages] == ["m2", "m3", "m4"]
    assert not queue.pending_messages
    with pytest.raises(sqs_models.ReceiptHandleIsInvalid):
        backend.delete_message("delete-test", "not-a-handle")
    backend.delete_queue("delete-test")


def test_delete_stops_at_its_message_however_deep_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend, _ = _backend_queue("deep-delete-test", 300)
    held = [m for _ in range(15) for m in backend.receive_message("deep-delete-test", 10, 0, 60)]
    target = held[-1]  # the 150th message of 300
    asked: list[str] = []
    stock_asked: list[str] = []
    original, real_had = sqs_models.Message.had_receipt_handle, moto_patches.holds_receipt

    def had(message: Any, handle: str) -> bool:
        asked.append(message.body)
        return real_had(message, handle)

    def had_receipt_handle(self: Any, handle: str) -> bool:
        stock_asked.append(self.body)
        return original(self, handle)

    monkeypatch.setattr(moto_patches, "holds_receipt", had)
    monkeypatch.setattr(sqs_models.Message, "had_receipt_handle", had_receipt_handle)
    backend.delete_message("deep-delete-test", target.receipt_handle)
    monkeypatch.undo()
    assert target.body == "m149"
    assert len(asked) == 150 and asked[-1] == "m149"  # not one message beyond it
    assert stock_asked == []  # stock moto asks all 300, and builds each one's handle list
    assert backend.get_queue("deep-delete-test").attributes["ApproximateNumberOfMessages"] == 150
    backend.delete_queue("deep-delete-test")


def test_receive_looks_only_as_far_as_it_needs() -> None:
    backend, queue = _backend_queue("receive-test", 200)
    backend.send_message("receive-test", "later", delay_seconds=30)
    held = backend.receive_message("receive-test", 3, 0, 60)  # in flight: skipped below
    looked = []
    counted: list[int] = []
    original_visible = sqs_models.Message.visible
    original_mark = sqs_models.Message.mark_received

    def visible(self: Any) -> bool:
        if threading.current_thread() is threading.main_thread():  # the receiving one
            looked.append(self.body)
        return bool(original_visible.fget(self))

    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        # Mid-receive: another thread still counts the queue's messages in full.
        reader = threading.Thread(target=lambda: counted.append(len(queue.messages)))
        reader.start()
        reader.join()
        original_mark(self, visibility_timeout)

    sqs_models.Message.visible = property(visible)  # type: ignore[method-assign,assignment]
    sqs_models.Message.mark_received = mark_received  # type: ignore[method-assign]
    try:
        received = backend.receive_message("receive-test", 2, 0, 60)
    finally:
        sqs_models.Message.visible = original_visible  # type: ignore[method-assign]
        sqs_models.Message.mark_received = original_mark  # type: ignore[method-assign]
    assert [m.body for m in held] == ["m0", "m1", "m2"]
    assert [m.body for m in received] == ["m3", "m4"]
    assert counted == [197, 196]  # 200 - 3 held - those received so far
    assert len(looked) <= 10  # stock moto asks all 201 first
    backend.delete_queue("receive-test")


def test_receive_reads_the_messages_as_they_were_when_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # moto's dead-letter move removes a message from the list in place, unlocked; a
    # receive walking the live list would skip the message after it, as stock moto,
    # which copies the list first, never does.
    backend, queue = _backend_queue("snapshot-test", 5)
    original = sqs_models.Message.mark_received
    removed: list[str] = []

    def mark_received(self: Any, visibility_timeout: int | None = None) -> None:
        if not removed:
            victim = queue._messages[1]
            queue._messages.remove(victim)
            removed.append(victim.body)
        original(self, visibility_timeout)

    monkeypatch.setattr(sqs_models.Message, "mark_received", mark_received)
    received = backend.receive_message("snapshot-test", 3, 0, 60)
    monkeypatch.undo()
    assert removed == ["m1"]
    assert [m.body for m in received] == ["m0", "m1", "m2"]
    backend.delete_queue("snapshot-test")


def test_a_long_poll_waits_for_a_message_without_spinning() -> None:
    backend, _ = _backend_queue("wait-test", 1)
    backend.receive_message("wait-test", 1, 0, 60)  # in flight: the queue shows none
    waits = []
    original = sqs_models.Queue.wait_for_messages

    def wait_for_messages(self: Any, timeout: int) -> None:
        waits.append(timeout)
        original(self, timeout)

    sqs_models.Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]
    threading.Timer(0.5, backend.send_message, ("wait-test", "arrived")).start()
    try:
        received = backend.receive_message("wait-test", 1, 5, 60)
    finally:
        sqs_models.Queue.wait_for_messages = original  # type: ignore[method-assign]
    assert [m.body for m in received] == ["arrived"]
    assert len(waits) <= 2  # a wait that returned at once would spin here
    assert backend.receive_message("wait-test", 1, 0, 60) == []  # no wait: empty at once
    backend.delete_queue("wait-test")


def test_a_long_poll_hands_out_a_delayed_message_when_it_comes_due() -> None:
    backend, queue = _backend_queue("due-test", 0)
    backend.send_message("due-test", "later")
    [message] = queue._messages
    # Due mid-way through moto's 1 s wait slice: stock moto looked again only at its end.
    message.delayed_until = time.time() * 1000 + 400
    [received] = backend.receive_message("due-test", 1, 5, 60)
    assert received.body == "later"
    late_ms = received.approximate_first_receive_timestamp - message.delayed_until
    assert 0 <= late_ms < 300
    backend.delete_queue("due-test")


def test_retention_check_still_refuses_expired_messages() -> None:
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue("retention-test", MessageRetentionPeriod="60")
    backend.send_message("retention-test", "old")
    queue = backend.get_queue("retention-test")
    [message] = queue._messages
    assert backend.is_message_valid_based_on_retention_period("retention-test", message)
    message.sent_timestamp -= 61_000
    assert not backend.is_message_valid_based_on_retention_period("retention-test", message)
    backend.delete_queue("retention-test")


def test_sends_skip_the_attribute_scan_only_for_the_sending_thread() -> None:
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue("send-test")
    queue = backend.get_queue("send-test")
    seen: list[dict[str, object]] = []
    original = sqs_models.Message.mark_sent

    def mark_sent(self: object, delay_seconds: int | None = None) -> None:
        # Mid-send: another thread still reads the queue's full attributes.
        reader = threading.Thread(target=lambda: seen.append(dict(queue.attributes)))
        reader.start()
        reader.join()
        original(self, delay_seconds=delay_seconds)  # type: ignore[arg-type]

    sqs_models.Message.mark_sent = mark_sent  # type: ignore[method-assign]
    try:
        backend.send_message("send-test", "a")
    finally:
        sqs_models.Message.mark_sent = original  # type: ignore[method-assign]
    backend.send_message("send-test", "b", delay_seconds=30)
    assert seen and seen[0]["ApproximateNumberOfMessages"] == 0
    attributes = queue.attributes
    assert attributes["ApproximateNumberOfMessages"] == 1
    assert attributes["ApproximateNumberOfMessagesDelayed"] == 1
    backend.delete_queue("send-test")


def test_fifo_content_based_deduplication_still_applies() -> None:
    install()
    backend = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    backend.create_queue("dedup-test.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    for _ in range(2):
        backend.send_message("dedup-test.fifo", "same body", group_id="g")
    assert backend.get_queue("dedup-test.fifo").attributes["ApproximateNumberOfMessages"] == 1
    backend.delete_queue("dedup-test.fifo")


def test_a_remembered_update_expression_gives_each_request_its_own_values() -> None:
    install()
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        hash_table(db, "t")
        expression = "SET n = if_not_exists(n, :zero) + :inc, tag = :tag"
        for pk, inc, tag in [("a", 1, "x"), ("b", 5, "y"), ("a", 2, "z")]:
            db.update_item(
                TableName="t",
                Key={"pk": {"S": pk}},
                UpdateExpression=expression,
                ExpressionAttributeValues={
                    ":zero": {"N": "0"},
                    ":inc": {"N": str(inc)},
                    ":tag": {"S": tag},
                },
            )
        a = db.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]
        b = db.get_item(TableName="t", Key={"pk": {"S": "b"}})["Item"]
        assert (a["n"], a["tag"], b["n"], b["tag"]) == (
            {"N": "3"},
            {"S": "z"},
            {"N": "5"},
            {"S": "y"},
        )
        # A value of the wrong type is refused, and the same text works after it.
        for _ in range(2):
            with pytest.raises(ClientError, match="ValidationException"):
                db.update_item(
                    TableName="t",
                    Key={"pk": {"S": "a"}},
                    UpdateExpression=expression,
                    ExpressionAttributeValues={
                        ":zero": {"N": "0"},
                        ":inc": {"S": "not a number"},
                        ":tag": {"S": "t"},
                    },
                )
        # A malformed expression raises every time (failures are not remembered).
        for _ in range(2):
            with pytest.raises(ClientError, match="ValidationException"):
                db.update_item(
                    TableName="t", Key={"pk": {"S": "a"}}, UpdateExpression="SET = broken"
                )
        n = db.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]["n"]
        assert n == {"N": "3"}


def test_checks_that_passed_for_some_names_still_run_for_others() -> None:
    # The key and duplicate-path checks are skipped only for a text, names and keys that
    # passed them before; other names with the same text are checked again.
    install()
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        hash_table(db, "t")

        def update(names: dict[str, str], table: str = "t", key: str = "pk") -> None:
            db.update_item(
                TableName=table,
                Key={key: {"S": "k"}},
                UpdateExpression="SET #a = :v, #b = :w",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":v": {"S": "1"}, ":w": {"S": "2"}},
            )

        for names in [{"#a": "x", "#b": "y"}, {"#a": "x", "#b": "y"}]:
            update(names)
        for names, message in [
            ({"#a": "pk", "#b": "y"}, "Cannot update attribute pk"),
            ({"#a": "x", "#b": "x"}, "Two document paths overlap"),
        ]:
            with pytest.raises(ClientError, match=message):
                update(names)
        item = db.get_item(TableName="t", Key={"pk": {"S": "k"}})["Item"]
        assert item == {"pk": {"S": "k"}, "x": {"S": "1"}, "y": {"S": "2"}}
        # The same text and names on a table whose key is x: checked again, refused.
        hash_table(db, "u", key="x")
        with pytest.raises(ClientError, match="Cannot update attribute x"):
            update({"#a": "x", "#b": "y"}, table="u", key="x")


def test_a_remembered_condition_is_judged_with_each_requests_names_and_values() -> None:
    install()
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        hash_table(db, "t")
        db.put_item(TableName="t", Item={"pk": {"S": "k"}, "n": {"N": "5"}, "m": {"N": "1"}})
        condition = "#f <= :limit AND attribute_exists(pk)"

        def update(field: str, limit: int) -> bool:
            try:
                db.update_item(
                    TableName="t",
                    Key={"pk": {"S": "k"}},
                    UpdateExpression="SET touched = :t",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#f": field},
                    ExpressionAttributeValues={":limit": {"N": str(limit)}, ":t": {"S": field}},
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                return False
            return True

        assert [update("n", 4), update("n", 5), update("m", 0), update("m", 1)] == [
            False,
            True,
            False,
            True,
        ]
        for _ in range(2):  # a malformed condition raises every time (moto: ValueError)
            with pytest.raises((ClientError, ValueError)):
                db.update_item(
                    TableName="t",
                    Key={"pk": {"S": "k"}},
                    UpdateExpression="SET touched = :t",
                    ConditionExpression="n <= AND",
                    ExpressionAttributeValues={":t": {"S": "x"}},
                )


def _dynamodb_bodies(
    response: dict[str, Any], transformers: dict[str, Any] | None = None
) -> tuple[str, str]:
    """The GetItem body as patched and as moto's own member-by-member walk writes it."""
    from moto.core.serialize import (
        BaseJSONSerializer,
        XFormedAttributePicker,
        get_serializer_class,
    )
    from moto.core.utils import get_service_model

    install()
    model = get_service_model("dynamodb")
    serializer = get_serializer_class("dynamodb", model.metadata["protocol"])
    walk = BaseJSONSerializer._serialize_type_structure.__wrapped__  # type: ignore[attr-defined]
    stock = type("Stock", (serializer,), {"_serialize_type_structure": walk})
    bodies = []
    for cls in (serializer, stock):
        picker = XFormedAttributePicker(response_transformers=transformers or {})
        out = cls(operation_model=model.operation_model("GetItem"), value_picker=picker)
        bodies.append(out.serialize(response)["body"])
    return bodies[0], bodies[1]


def test_attribute_values_serialize_as_moto_writes_them() -> None:
    item = {
        "pk": {"S": "task-1"},
        "empty": {"S": ""},
        "unicode": {"S": "zażółć \u2603"},
        "n": {"N": "-1.5e3"},
        "yes": {"BOOL": True},
        "no": {"BOOL": False},
        "null": {"NULL": True},
        "blob": {"B": b"\x00\xff payload"},
        "strings": {"SS": ["a", "b"]},
        "numbers": {"NS": ["1", "2.5"]},
        "blobs": {"BS": [b"\x01", b"\x02"]},
        "errors": {"L": [{"S": "a"}, {"N": "2"}, {"M": {"k": {"S": "v"}, "b": {"B": b"x"}}}]},
        "map": {"M": {"x": {"BOOL": False}, "y": {"L": []}}},
    }
    patched, stock = _dynamodb_bodies({"Item": item})
    assert patched == stock
    assert '"blob": {"B": "AP8gcGF5bG9hZA=="}' in patched  # binary still goes through moto


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        ("Item.pk.S", '"pk": {"S": "TASK-1"}'),
        ("pk.M", '"M": {"k": {"S": "added"}}'),  # moto asks every member, absent ones too
    ],
)
def test_a_response_transformer_still_applies_to_attribute_values(path: str, expect: str) -> None:
    def transform(value: Any) -> Any:
        return value.upper() if isinstance(value, str) else {"k": {"S": "added"}}

    patched, stock = _dynamodb_bodies({"Item": {"pk": {"S": "task-1"}}}, {path: transform})
    assert patched == stock
    assert expect in patched


def test_plain_attribute_values_skip_the_member_lookups() -> None:
    from moto.core.serialize import XFormedAttributePicker, get_serializer_class
    from moto.core.utils import get_service_model

    install()
    looked_up: list[str] = []

    class Counting(XFormedAttributePicker):
        def __call__(self, context: Any) -> Any:
            looked_up.append(context.key)
            return super().__call__(context)

    model = get_service_model("dynamodb")
    serializer = get_serializer_class("dynamodb", model.metadata["protocol"])
    out = serializer(operation_model=model.operation_model("GetItem"), value_picker=Counting())
    out.serialize({"Item": {"a": {"S": "x"}, "b": {"N": "1"}, "c": {"B": b"x"}}})
    # Item and ConsumedCapacity, then the ten members of the blob only (moto: 2 + 30).
    assert len(looked_up) == 2 + 10
