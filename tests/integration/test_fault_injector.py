"""The emulator's fault injector (local/faults.py) as a client without retries sees it:
each kind answers as AWS does, per service and action, switched over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from stratoq.core.settings import Settings
from stratoq.local.faults import CONTROL_PATH, fault_state, set_faults


def bare(service: str, settings: Settings) -> Any:
    """A client that does not retry, so the first answer is what the test sees."""
    return boto3.client(
        service,
        endpoint_url=settings.aws_endpoint_url,
        region_name=settings.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # an emulator's placeholder
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_each_kind_answers_as_aws_does(emulator: str, settings: Settings) -> None:
    db, sqs = bare("dynamodb", settings), bare("sqs", settings)
    table = settings.tasks_table
    url = next(iter(settings.queues.values()))
    errors = {
        "throttle": ("ThrottlingException", "ThrottlingException", 400),
        "capacity": ("ProvisionedThroughputExceededException", "RequestThrottled", 400),
        "500": ("InternalServerError", "InternalError", 500),
        "503": ("ServiceUnavailable", "ServiceUnavailable", 503),
    }
    for kind, (db_code, sqs_code, status) in errors.items():
        set_faults(emulator, f"dynamodb:GetItem={kind}:1,sqs:SendMessage={kind}:1")
        with pytest.raises(ClientError) as db_error:
            db.get_item(TableName=table, Key={"pk": {"S": "x"}})
        with pytest.raises(ClientError) as sqs_error:
            sqs.send_message(QueueUrl=url, MessageBody="x")
        got = [
            (
                e.value.response["Error"]["Code"],
                e.value.response["ResponseMetadata"]["HTTPStatusCode"],
            )
            for e in (db_error, sqs_error)
        ]
        assert got == [(db_code, status), (sqs_code, status)], kind
        # Other actions pass.
        assert db.describe_table(TableName=table)["Table"]["TableName"] == table

    set_faults(emulator, "dynamodb:PutItem=reset:1:times=1")
    with pytest.raises(ConnectionClosedError):
        db.put_item(TableName=table, Item={"pk": {"S": "reset"}})
    assert "Item" not in db.get_item(TableName=table, Key={"pk": {"S": "reset"}})

    set_faults(emulator, "dynamodb:PutItem=lost:1:times=1")
    with pytest.raises(ConnectionClosedError):
        db.put_item(TableName=table, Item={"pk": {"S": "lost"}})
    assert "Item" in db.get_item(TableName=table, Key={"pk": {"S": "lost"}})  # applied

    set_faults(emulator, "dynamodb:GetItem=delay:1:seconds=0.3")
    started = time.monotonic()
    db.get_item(TableName=table, Key={"pk": {"S": "x"}})
    assert time.monotonic() - started >= 0.3
    assert [r["injected"] for r in fault_state(emulator)["rules"]] == [1]


def test_the_control_endpoint_switches_and_refuses_bad_specs(emulator: str) -> None:
    def call(method: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(emulator + CONTROL_PATH, data=data, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, state = call("POST", {"spec": "sqs:*=503:0.5", "seed": 3})
    assert status == 200
    assert state["seed"] == 3
    assert [(r["service"], r["kind"], r["rate"]) for r in state["rules"]] == [("sqs", "503", 0.5)]
    status, body = call("POST", {"spec": "sqs:*=boom"})
    assert status == 400 and "kind 'boom' is not one of" in body["message"]
    assert call("GET")[1]["rules"][0]["kind"] == "503"  # a refused spec changes nothing
    assert call("DELETE")[1]["rules"] == []
