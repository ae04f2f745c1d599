"""Requests resolved at once in one process (the dev stack's threaded gateway) are each
answered for their own body and caller, never another's."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from stratoq.api.app import ApiFunction
from stratoq.core.settings import Settings
from stratoq.services.app import Services


def event(scopes: str, body: str) -> dict[str, Any]:
    return {
        "resource": "/{proxy+}",
        "path": "/v1/tasks",
        "httpMethod": "POST",
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": "v1/tasks"},
        "requestContext": {"requestId": "r", "authorizer": {"tenant": "t", "scopes": scopes}},
        "body": body,
        "isBase64Encoded": False,
    }


@pytest.fixture
def switch_often() -> Iterator[None]:
    # Threads switch at (almost) every bytecode, so an unguarded shared request shows.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("switch_often")
def test_concurrent_requests_are_judged_by_their_own_body_and_scopes() -> None:
    # Both are refused before any AWS call: a read-only key (403) and a bad field (422).
    api = ApiFunction(Services(Settings()))
    wrong = {"read-only": 0, "bad-field": 0}

    def run(name: str, scopes: str, body: str, expect: int) -> None:
        for _ in range(1500):
            if api(event(scopes, body), None)["statusCode"] != expect:
                wrong[name] += 1

    threads = [
        threading.Thread(
            target=run, args=("read-only", "tasks:read", json.dumps({"name": "x"}), 403)
        ),
        threading.Thread(
            target=run, args=("bad-field", "admin", json.dumps({"name": "x", "bad": 1}), 422)
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == {"read-only": 0, "bad-field": 0}
