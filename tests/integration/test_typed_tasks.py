"""Typed tasks against the emulator: the worker validates a payload that got past every
other check, stores a returned model as JSON; an API without the workers' code enqueues."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from stratoq.api.app import ApiFunction
from stratoq.core.models import TaskRequest, TaskStatus
from stratoq.core.settings import Settings
from stratoq.services.app import Services
from stratoq.services.enqueue import Enqueuer
from stratoq.services.runner import InlineRunner
from stratoq.services.worker import Worker
from tests.support import typed_tasks
from tests.support.pump import pump_until_final


@pytest.fixture
def worker(core: Enqueuer) -> Worker:
    assert typed_tasks.typed_add.name == "typed_add"  # registered in this process
    return Worker(core.store, core.transport, InlineRunner())


def test_a_payload_that_does_not_fit_fails_once_naming_the_field(
    core: Enqueuer, worker: Worker
) -> None:
    # The Enqueuer checks no models: as a producer without the tasks' code (a schedule,
    # a bridge, an API deployed alone) would send it.
    bad = core.enqueue(TaskRequest(name="typed_add", payload={"a": 1, "b": "x"}, max_attempts=3))
    good = core.enqueue(TaskRequest(name="typed_add", payload={"a": 1, "b": 2}))
    failed, done = pump_until_final(core, worker, [bad.task.id, good.task.id])
    assert (failed.status, failed.attempts, failed.max_attempts) == (TaskStatus.FAILED, 1, 3)
    [error] = failed.errors
    assert error.kind == "invalid_payload"
    assert "payload.b: Input should be a valid integer" in error.message
    assert (done.status, done.result) == (TaskStatus.SUCCEEDED, {"total": 3})


def call(api: ApiFunction, path: str, body: Any) -> tuple[int, Any]:
    event = {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": "POST",
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "requestContext": {"requestId": "r", "authorizer": {"tenant": "t", "scopes": "admin"}},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    out = api(event, None)
    return out["statusCode"], json.loads(out["body"])


def test_an_api_without_the_workers_code_enqueues_without_defaults_and_warns_once(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    api = ApiFunction(Services(settings.with_(tasks_module="no_such_team.tasks")))
    with caplog.at_level(logging.WARNING, logger="stratoq.services.app"):
        answers = [call(api, "/v1/tasks", {"name": "typed_add", "payload": {"a": 1}})]
        answers.append(call(api, "/v1/tasks/batch", {"tasks": [{"name": "typed_add"}]}))
    assert [status for status, _ in answers] == [202, 202], answers
    task = answers[0][1]
    # This process knows typed_add (the test imported it), but the API's tasks module is
    # not there: no options of its, no payload check; the deployment's defaults.
    assert (task["priority"], task["max_attempts"]) == ("default", settings.default_max_attempts)
    warnings = [r for r in caplog.records if "cannot import the tasks module" in r.message]
    assert len(warnings) == 1
