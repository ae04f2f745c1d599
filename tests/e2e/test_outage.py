"""The API in an AWS outage (issue 23, item 4): DynamoDB or SQS refusing everything for
a while is a 503 with Retry-After, leaves nothing half-written, and service returns
with the backend, without a restart. Faults come from the dev stack's emulator
(local/faults.py, switched over its control endpoint)."""

from __future__ import annotations

import json
from typing import Any

from stratoq.core.settings import Settings
from stratoq.local.faults import set_faults
from tests.e2e.conftest import DevStack
from tests.support.procs import wait_for


def post_task(dev: DevStack, payload: Any) -> tuple[int, dict[str, str], Any]:
    resp = dev.http.request(
        "POST",
        dev.api_url + "/v1/tasks",
        body=json.dumps({"name": "echo", "payload": payload}).encode(),
        headers={"content-type": "application/json", "x-api-key": dev.api_key},
    )
    return resp.status, dict(resp.headers), json.loads(resp.data)


def task_ids(dev: DevStack) -> set[str]:
    status, body = dev.request("GET", "/v1/tasks?limit=100")
    assert status == 200, body
    return {t["id"] for t in body["tasks"]}


def runs_after_the_outage(dev: DevStack, payload: Any) -> str:
    set_faults(dev.aws_endpoint_url, "")
    status, _, body = post_task(dev, payload)
    assert status == 202, body

    def done() -> bool:
        got = dev.request("GET", f"/v1/tasks/{body['id']}")[1]
        return bool(got["status"] == "succeeded")

    wait_for(done, 60, "the task enqueued after the outage to succeed")
    return str(body["id"])


def test_a_dynamodb_outage_is_a_503_with_retry_after_and_service_returns(
    dev: DevStack,
) -> None:
    before = task_ids(dev)
    set_faults(dev.aws_endpoint_url, "dynamodb:*=503:1")
    # Every DynamoDB call fails, the API key's check first: the gateway's answer.
    status, headers, body = post_task(dev, {"during": "all"})
    assert (status, headers.get("Retry-After")) == (503, "5"), body
    assert body["message"] == "the API key could not be checked just now; try again shortly"

    # Only the tasks table fails: the key is checked, and the API itself answers.
    set_faults(dev.aws_endpoint_url, f"dynamodb:*=503:1:match={Settings().tasks_table}")
    status, headers, body = post_task(dev, {"during": "tasks"})
    assert (status, headers.get("Retry-After")) == (503, "5"), body
    assert body["message"].startswith("AWS is unavailable for the moment (")
    status, _ = dev.request("GET", "/v1/tasks?limit=1")
    assert status == 503

    ran = runs_after_the_outage(dev, {"after": "dynamodb"})
    # Nothing half-written: the refused requests stored no task (their messages, sent
    # first, are orphans that workers drop after the grace period).
    assert task_ids(dev) - before == {ran}


def test_an_sqs_outage_is_a_503_that_stores_nothing(dev: DevStack) -> None:
    before = task_ids(dev)
    set_faults(dev.aws_endpoint_url, "sqs:SendMessage=503:1,sqs:SendMessageBatch=503:1")
    status, headers, body = post_task(dev, {"during": "sqs"})
    assert (status, headers.get("Retry-After")) == (503, "5"), body
    assert "nothing was enqueued, try again" in body["message"]
    ran = runs_after_the_outage(dev, {"after": "sqs"})
    assert task_ids(dev) - before == {ran}
