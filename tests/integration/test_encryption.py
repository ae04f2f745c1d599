"""Payload encryption against the emulator's KMS, with the stack's own key.

What rests in DynamoDB and travels over SQS is checked raw, as an operator with table
or queue access (and no KMS permission) would see it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from stratoq.adapters import aws
from stratoq.adapters.crypto import DecryptionError, is_encrypted
from stratoq.adapters.store import Claimed, TaskStore, encode_page_token
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.enqueue import Enqueuer

MARKER = "zebra-7f3c-secret"
NOW = 1_800_000_000_000


def scan_text(core: Enqueuer) -> str:
    """Every item of the tasks table, as text (binary attributes decoded leniently)."""
    items = aws.dynamodb(core.settings).scan(TableName=core.store.table)["Items"]

    def text(value: Any) -> str:
        if isinstance(value, bytes | bytearray):
            return value.decode("latin-1")
        return json.dumps(value, default=lambda v: text(v) if isinstance(v, bytes) else str(v))

    return "\n".join(text(i) for i in items)


def raw_item(core: Enqueuer, task_id: str) -> dict[str, Any]:
    out = aws.dynamodb(core.settings).get_item(
        TableName=core.store.table, Key={"pk": {"S": task_id}}
    )
    return dict(out["Item"])


def test_the_local_stack_has_a_rotating_kms_key(settings: Settings) -> None:
    assert settings.kms_key_id is not None
    assert settings.kms_key_id.startswith("arn:aws:kms:")
    kms = aws.client("kms", settings)
    # (DescribeKey trips over moto 5.2.5 keeping a CloudFormation key policy as a dict.)
    assert kms.get_key_rotation_status(KeyId=settings.kms_key_id)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/stratoq-task-data"] == settings.kms_key_id.rsplit("/", 1)[1]


def test_payload_and_result_rest_encrypted_and_read_back_in_clear(core: Enqueuer) -> None:
    task = core.enqueue(TaskRequest(name="echo", payload={"card": MARKER}), "acme").task
    claim = core.store.claim(task.id, "acme", NOW, 30_000)
    assert isinstance(claim, Claimed)
    assert claim.task.payload == {"card": MARKER}  # what the worker hands the handler
    assert core.store.complete(task.id, "acme", claim.token, {"echo": MARKER}, NOW)

    item = raw_item(core, task.id)
    assert set(item["payload"]) == {"B"}
    assert set(item["result"]) == {"B"}
    assert is_encrypted(item["payload"]["B"])
    assert is_encrypted(item["result"]["B"])
    assert MARKER not in scan_text(core)

    got = core.store.get(task.id, "acme")
    assert got is not None
    assert got.status is TaskStatus.SUCCEEDED
    assert (got.payload, got.result) == ({"card": MARKER}, {"echo": MARKER})
    assert core.store.get(task.id, "someone-else") is None  # not even decrypted for them


def test_batch_writes_are_encrypted_too(core: Enqueuer) -> None:
    requests = [TaskRequest(name="echo", payload=f"{MARKER}-{i}") for i in range(30)]
    done = core.enqueue_many(requests, "acme")
    assert MARKER not in scan_text(core)
    tasks, _ = core.store.list_tasks("acme", limit=100)
    assert sorted(t.payload for t in tasks) == sorted(f"{MARKER}-{i}" for i in range(30))
    assert {t.id for t in tasks} == {d.task.id for d in done}


def test_messages_carry_only_the_task_id_and_tenant(core: Enqueuer, settings: Settings) -> None:
    core.enqueue(TaskRequest(name="echo", payload=MARKER), "acme")
    core.enqueue(TaskRequest(name="echo", payload=MARKER, delay_seconds=3600), "acme")
    sqs = aws.sqs(settings)
    bodies: list[str] = []
    for _ in range(3):
        out = sqs.receive_message(
            QueueUrl=core.transport.url("default"), MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        bodies += [m["Body"] for m in out.get("Messages", [])]
    assert bodies, "the undelayed message should be visible"
    for body in bodies:
        assert MARKER not in body
        # Metadata only: id, tenant, name, due time, enqueue time, first hand-back, wait,
        # and the enqueue's trace context (only while tracing).
        assert set(json.loads(body)) <= {"id", "t", "nb", "n", "e", "u", "w", "tp"}
        assert json.loads(body)["n"] == "echo"  # the name, so unknown names go back unclaimed


def test_a_payload_copied_to_another_task_does_not_decrypt(core: Enqueuer) -> None:
    first = core.enqueue(TaskRequest(name="echo", payload=MARKER, delay_seconds=600), "acme")
    second = core.enqueue(TaskRequest(name="echo", payload="mine", delay_seconds=600), "acme")
    stolen = raw_item(core, first.task.id)["payload"]
    aws.dynamodb(core.settings).update_item(
        TableName=core.store.table,
        Key={"pk": {"S": second.task.id}},
        UpdateExpression="SET payload = :p",
        ExpressionAttributeValues={":p": stolen},
    )
    with pytest.raises(DecryptionError):
        core.store.get(second.task.id, "acme")


def test_without_the_key_nothing_decrypts(core: Enqueuer) -> None:
    task = core.enqueue(TaskRequest(name="echo", payload=MARKER, delay_seconds=600), "acme").task
    keyless = TaskStore(aws.dynamodb(core.settings), core.store.table)
    with pytest.raises(DecryptionError, match="STRATOQ_KMS_KEY_ID"):
        keyless.get(task.id, "acme")


def test_tasks_stored_in_clear_stay_readable(core: Enqueuer) -> None:
    """A deployment that turns encryption on still reads what it stored before."""
    clear = TaskStore(aws.dynamodb(core.settings), core.store.table)
    task = core.build(TaskRequest(name="echo", payload={"old": True}), "acme")
    clear.create(task, NOW)
    assert raw_item(core, task.id)["payload"] == {"S": '{"old":true}'}
    got = core.store.get(task.id, "acme")
    assert got is not None
    assert got.payload == {"old": True}


def forged(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def test_page_tokens_stay_within_the_callers_partition(core: Enqueuer) -> None:
    # acme's tasks are listed through one page of a batch, rival's one by one.
    core.enqueue_many([TaskRequest(name="echo", delay_seconds=600)] * 3, "acme")
    for _ in range(3):
        core.enqueue(TaskRequest(name="echo", delay_seconds=600), "rival")
    page, token = core.store.list_tasks("acme", limit=2)
    assert token is not None
    rest, _ = core.store.list_tasks("acme", limit=2, next_token=token)
    assert len(page) + len(rest) == 3

    _, their_token = core.store.list_tasks("rival", limit=1)
    assert their_token is not None
    with pytest.raises(ValueError, match="next_token"):
        core.store.list_tasks("acme", limit=2, next_token=their_token)
    # A token from inside acme's listing page names that page: rival cannot use it.
    _, inside = core.store.list_tasks("acme", limit=1)
    assert inside is not None
    with pytest.raises(ValueError, match="next_token"):
        core.store.list_tasks("rival", limit=5, next_token=inside)
    token = their_token
    start = json.loads(base64.urlsafe_b64decode(token))
    key = start["k"]
    for bad in [
        {**start, "k": {**key, "listed": {"S": "rival"}}},
        {**start, "k": {k: v for k, v in key.items() if k != "created_at"}},
        {**start, "k": {**key, "created_at": {"N": "1e9"}}},
        {**start, "k": {**key, "pk": {"B": "AAAA"}}},
        {**start, "k": {**key, "extra": {"S": "x"}}},
        {**start, "s": -1},
        {**start, "s": "1"},
        {**start, "s": 3},  # resuming inside an entry that is no listing page
        {"k": None, "s": 3},
        {**start, "k": {**key, "pk": {"N": "1"}}},
        {**start, "k": {**key, "created_at": {"S": "1"}}},
        {**start, "k": {**key, "created_at": {"N": "\u00b2"}}},
        {"k": key},
        [start],
    ]:
        token = forged(bad) if isinstance(bad, dict) else encode_page_token({"x": bad})
        with pytest.raises(ValueError, match="next_token"):
            core.store.list_tasks("acme", limit=2, next_token=token)
    with pytest.raises(ValueError, match="next_token"):
        core.store.list_tasks("acme", TaskStatus.FAILED, limit=2, next_token=forged(start))
