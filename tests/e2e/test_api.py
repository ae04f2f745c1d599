"""The dev stack as a user meets it: HTTP with API keys, the SDK and the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stratoq import Client
from stratoq.core.models import TaskStatus
from stratoq.sdk.client import AuthError, Conflict, NotFound
from tests.conftest import PYTHON
from tests.e2e.conftest import DevStack, cli_in, key_for, project_of, start_dev, stop_dev
from tests.support.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------- auth
def test_health_needs_no_key(dev: DevStack) -> None:
    assert dev.request("GET", "/health", key=None) == (200, {"status": "ok", "version": "0.1.0"})


@pytest.mark.parametrize("key", [None, "", "sq_000000000000_not-a-real-key-at-all-000"])
def test_missing_or_unknown_key_is_401(dev: DevStack, key: str | None) -> None:
    status, body = dev.request("GET", "/v1/tasks", key=key)
    assert status == 401
    assert body == {"message": "Unauthorized"}


def test_scopes_are_enforced(dev: DevStack) -> None:
    reader = key_for(dev, "scoped", "tasks:read")
    writer = key_for(dev, "scoped", "tasks:write")
    status, body = dev.request("POST", "/v1/tasks", {"name": "echo"}, key=reader)
    assert status == 403
    assert "tasks:write" in body["message"]
    assert dev.request("GET", "/v1/tasks", key=reader)[0] == 200
    status, created = dev.request("POST", "/v1/tasks", {"name": "echo"}, key=writer)
    assert status == 202
    assert dev.request("GET", f"/v1/tasks/{created['id']}", key=writer)[0] == 200
    for method, path in [("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/x")]:
        status, body = dev.request(method, path, {"tenant": "x", "scopes": ["admin"]}, key=writer)
        assert status == 403, (method, path)
        assert "admin" in body["message"]


def test_revoked_key_is_refused_at_once(dev: DevStack) -> None:
    key = key_for(dev, "revoking", "tasks:read")
    assert dev.request("GET", "/v1/tasks", key=key)[0] == 200
    key_id = key.split("_")[1]
    status, body = dev.request("DELETE", f"/v1/keys/{key_id}")
    assert status == 200
    assert body["revoked"] is True
    assert dev.request("GET", "/v1/tasks", key=key)[0] == 401


def test_tenants_are_isolated(dev: DevStack) -> None:
    a = Client(dev.api_url, key_for(dev, "tenant-a", "tasks:write"))
    b = Client(dev.api_url, key_for(dev, "tenant-b", "tasks:write"))
    task = a.enqueue("echo", "a's secret", delay_seconds=600)
    with pytest.raises(NotFound):
        b.get(task.id)
    with pytest.raises(NotFound):
        b.cancel(task.id)
    assert task.id not in [t.id for t in b.iter_tasks()]
    assert task.id in [t.id for t in a.iter_tasks()]
    assert a.cancel(task.id).status is TaskStatus.CANCELLED


# ------------------------------------------------------------ task life
def test_enqueue_runs_and_returns_the_result(client: Client) -> None:
    task = client.enqueue("echo", {"nested": [1, {"two": None}]})
    assert task.status is TaskStatus.QUEUED
    done = client.wait(task.id, timeout=30)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.result == {"nested": [1, {"two": None}]}
    assert done.attempts == 1


def test_retries_to_success(client: Client) -> None:
    task = client.enqueue("fail", {"times": 2}, backoff={"base_seconds": 0.5, "jitter": False})
    done = client.wait(task.id, timeout=60)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.attempts == 3
    assert [e.attempt for e in done.errors] == [1, 2]


def test_retries_to_failure(client: Client) -> None:
    task = client.enqueue("fail", {}, max_attempts=2, backoff={"base_seconds": 0})
    done = client.wait(task.id, timeout=60)
    assert done.status is TaskStatus.FAILED
    assert [(e.attempt, e.kind) for e in done.errors] == [(1, "error"), (2, "error")]
    assert done.id in [t.id for t in client.iter_tasks(status="failed")]


def test_timeout_stops_the_task(client: Client) -> None:
    task = client.enqueue("cpu", {"seconds": 60}, timeout_seconds=1, max_attempts=1)
    done = client.wait(task.id, timeout=30)
    assert done.status is TaskStatus.FAILED
    assert done.errors[0].kind == "timeout"


def test_delay(client: Client) -> None:
    task = client.enqueue("echo", 1, delay_seconds=2)
    assert task.status is TaskStatus.SCHEDULED
    done = client.wait(task.id, timeout=30)
    assert done.status is TaskStatus.SUCCEEDED
    assert (done.started_at - done.created_at).total_seconds() >= 1.9


def test_idempotency_key(dev: DevStack) -> None:
    body = {"name": "echo", "payload": 7, "idempotency_key": "order-42"}
    first_status, first = dev.request("POST", "/v1/tasks", body)
    second_status, second = dev.request("POST", "/v1/tasks", body)
    assert (first_status, second_status) == (202, 200)
    assert first["id"] == second["id"]
    status, page = dev.request("GET", "/v1/tasks?name=echo&limit=1000")
    assert status == 200
    assert [t["id"] for t in page["tasks"] if t["payload"] == 7] == [first["id"]]


def test_cancel(client: Client) -> None:
    task = client.enqueue("echo", 1, delay_seconds=600)
    assert client.cancel(task.id).status is TaskStatus.CANCELLED
    with pytest.raises(Conflict, match="cancelled"):
        client.cancel(task.id)
    finished = client.wait(client.enqueue("echo", 2).id, timeout=30)
    with pytest.raises(Conflict, match="succeeded"):
        client.cancel(finished.id)


def test_manual_retry_of_a_failed_task(client: Client, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.write_text("x")
    task = client.enqueue("fail_while", {"path": str(flag)})
    assert client.wait(task.id, timeout=30).status is TaskStatus.FAILED
    flag.unlink()
    assert client.retry(task.id).status is TaskStatus.QUEUED
    done = client.wait(task.id, timeout=30)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.attempts == 1
    with pytest.raises(Conflict):
        client.retry(task.id)


def test_batch_of_100(dev: DevStack, client: Client) -> None:
    tasks = client.enqueue_many([{"name": "echo", "payload": i} for i in range(100)])
    assert len({t.id for t in tasks}) == 100
    out = dev.cli("wait", *[t.id for t in tasks], "--timeout", "120")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 100
    assert sorted(client.get(t.id).result for t in tasks[:10]) == list(range(10))


# ----------------------------------------------------------- bad input
def test_malformed_json_is_400(dev: DevStack) -> None:
    status, body = dev.request("POST", "/v1/tasks", raw=b'{"name": ')
    assert status == 400
    assert body["message"] == "request body is not valid JSON"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "echo", "surprise": 1}, "surprise"),
        ({"payload": 1}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "echo", "max_attempts": 0}, "max_attempts"),
        ({"name": "echo", "timeout_seconds": "soon"}, "timeout_seconds"),
        ({"name": "echo", "backoff": {"base_seconds": -1}}, "backoff.base_seconds"),
        ({"name": "echo", "queue": "nope"}, "queue"),
        ({"name": "echo", "unique": True, "idempotency_key": "k"}, "unique"),
        ({"name": "echo", "unique": "sometimes"}, "unique"),
        (
            {"name": "echo", "idempotency_key": "k", "idempotency_window_seconds": 0},
            "idempotency_window_seconds",
        ),
        (
            {"name": "echo", "unique": True, "idempotency_window_seconds": 7 * 86400 + 1},
            "idempotency_window_seconds",
        ),
        ({"name": "echo", "idempotency_window_seconds": 60}, "idempotency_window_seconds"),
    ],
)
def test_invalid_fields_are_named(dev: DevStack, body: dict[str, Any], field: str) -> None:
    status, answer = dev.request("POST", "/v1/tasks", body)
    assert status == 422
    assert field in [e["field"] for e in answer["errors"]]
    assert field in answer["message"]


def test_oversized_payload_is_413(dev: DevStack) -> None:
    status, body = dev.request("POST", "/v1/tasks", {"name": "echo", "payload": "x" * 300_000})
    assert status == 413
    assert body["errors"][0]["field"] == "payload"
    status, body = dev.request(
        "POST", "/v1/tasks", raw=b'{"name": "echo", "payload": "' + b"x" * 1_100_000 + b'"}'
    )
    assert status == 413


def test_batch_over_100_is_refused(dev: DevStack) -> None:
    status, body = dev.request("POST", "/v1/tasks/batch", {"tasks": [{"name": "echo"}] * 101})
    assert status == 422
    assert body["errors"][0]["field"] == "tasks"


def test_unknown_route_is_404_json(dev: DevStack) -> None:
    status, body = dev.request("GET", "/v1/nothing")
    assert status == 404
    assert "no route" in body["message"]


# ----------------------------------------------------------------- CLI
def test_cli_enqueue_wait_status_and_list(dev: DevStack) -> None:
    out = dev.cli("enqueue", "echo", "--payload", '{"via": "cli"}', "--wait", "30")
    assert out.returncode == 0, out.stderr
    task = json.loads(out.stdout)
    assert task["status"] == "succeeded"
    assert task["result"] == {"via": "cli"}
    status = dev.cli("status", task["id"])
    assert status.returncode == 0
    assert json.loads(status.stdout)["id"] == task["id"]
    listing = dev.cli("tasks", "--status", "succeeded", "--limit", "1000")
    assert task["id"] in listing.stdout


def test_cli_bad_input_exits_2_with_a_sentence(dev: DevStack) -> None:
    out = dev.cli("enqueue", "echo", "--payload", "{not json")
    assert out.returncode == 2
    assert "--payload is not valid JSON" in out.stderr
    assert "Traceback" not in out.stderr
    out = dev.cli("enqueue", "echo", "--max-attempts", "0")
    assert out.returncode == 2
    assert "max_attempts" in out.stderr
    missing = dev.cli("status", "0" * 32)
    assert missing.returncode == 1
    assert "no task" in missing.stderr


def test_cli_finds_dev_json_from_a_subdirectory(dev: DevStack, tmp_path: Path) -> None:
    deep = project_of(dev, tmp_path / "project")
    out = cli_in(deep, "queues")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["queue"] == "default"


def test_cli_without_dev_json_says_where_it_looked(tmp_path: Path) -> None:
    here = tmp_path / "elsewhere" / "deeper"
    here.mkdir(parents=True)
    above = [p for p in (here, *here.parents) if (p / ".stratoq" / "dev.json").exists()]
    assert not above, f"a dev.json above the test's directory spoils it: {above}"
    out = cli_in(here, "queues")
    assert out.returncode == 2, out.stderr
    assert out.stderr == (
        "stratoq: no API configured: set STRATOQ_API_URL and STRATOQ_API_KEY, pass the URL "
        "and key (--api-url/--api-key, or Client(api_url, api_key)), or start `stratoq dev`; "
        f"looked for .stratoq/dev.json in {here} and its parents\n"
    )


def test_cli_keys(dev: DevStack) -> None:
    out = dev.cli("keys", "create", "--tenant", "cli-tenant", "--scopes", "tasks:read")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip()
    assert re.fullmatch(r"sq_[0-9a-f]{12}_[A-Za-z0-9_-]+", key)
    listed = dev.cli("keys", "list", "--tenant", "cli-tenant")
    assert key.split("_")[1] in listed.stdout
    assert key not in listed.stdout  # secrets are never listed
    with pytest.raises(AuthError):
        Client(dev.api_url, key).enqueue("echo")


# -------------------------------------------------------------- OpenAPI
def test_openapi_spec_and_docs_agree(dev: DevStack) -> None:
    status, spec = dev.request("GET", "/v1/openapi.json")
    assert status == 200
    routes = {
        (method.upper(), re.sub(r"\{(\w+)\}", r"{\1}", path))
        for path, ops in spec["paths"].items()
        for method in ops
    }
    assert ("POST", "/v1/tasks") in routes
    assert ("GET", "/v1/tasks/{task_id}") in routes
    docs = (ROOT / "docs" / "api.md").read_text()
    missing = [f"{m} {p}" for m, p in sorted(routes) if f"`{m} {p}`" not in docs]
    assert missing == [], f"docs/api.md does not document: {missing}"


def test_lambda_style_workers(tmp_path: Path) -> None:
    stack = start_dev(tmp_path, "--workers", "0", "--lambda-workers", "1")
    try:
        client = Client(stack.api_url, stack.api_key)
        ids = [
            t.id for t in client.enqueue_many([{"name": "echo", "payload": i} for i in range(5)])
        ]
        ids.append(client.enqueue("fail", {"times": 1}, backoff={"base_seconds": 0}).id)
        done = [client.wait(i, timeout=60) for i in ids]
        assert all(t.status is TaskStatus.SUCCEEDED for t in done)
        assert done[-1].attempts == 2
    finally:
        assert stop_dev(stack) == 0


# ------------------------------------------------------- two worker fleets
FLEET = ("--tasks", "tests.support.fleet_tasks")


def test_a_second_fleet_gets_its_tasks_the_dev_pollers_hand_back_unspent(
    dev: DevStack, tmp_path: Path
) -> None:
    # What a user did, following the README: the dev stack runs, and an extra poller
    # runs their own tasks module against it. Every one of their tasks used to be taken by
    # the dev stack's pollers, which do not know the name, and failed at once.
    status, body = dev.request("POST", "/v1/tasks", {"name": "invoice"})
    assert status == 400 and body["errors"][0]["field"] == "name", body
    assert "'invoice'" in body["message"] and "allow_unknown_name" in body["message"]
    tasks = [{"name": "invoice", "payload": i, "allow_unknown_name": True} for i in range(14)]
    status, body = dev.request("POST", "/v1/tasks/batch", {"tasks": tasks})
    assert status == 202, body
    ids = [t["id"] for t in body["tasks"]]

    # Only the dev pollers run yet: each of them hands every task back, unclaimed.
    def handed_back() -> bool:
        lines = [json.loads(ln) for ln in dev.log.read_text().splitlines() if ln.startswith("{")]
        back = {ln.get("task_id") for ln in lines if "handed back" in ln["message"]}
        return set(ids) <= back

    wait_for(handed_back, 30, "the dev pollers to hand the 14 tasks back")
    for tid in ids:
        task = dev.request("GET", f"/v1/tasks/{tid}")[1]
        assert (task["status"], task["attempts"], task["errors"]) == ("queued", 0, []), task

    # The README's commands for the extra poller, with the user's tasks module.
    out = dev.cli("--aws-endpoint-url", dev.aws_endpoint_url, "provision")
    assert out.returncode == 0, out.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    # `provision` gives it the dev pollers' short receive wait: with the default 20 s an
    # idle poller of three priority queues waits up to 7 s on one of them, and loses most
    # races for a handed-back message to pollers that ask more often (issue 24).
    assert env["STRATOQ_POLL_WAIT_SECONDS"] == "2"
    log = tmp_path / "fleet.log"
    with log.open("wb") as sink:
        fleet = subprocess.Popen(
            [PYTHON, "-m", "stratoq", "worker", "-c", "2", "--metrics-port", "0", *FLEET],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def all_succeeded() -> list[dict[str, Any]] | None:
            got = [dev.request("GET", f"/v1/tasks/{i}")[1] for i in ids]
            return got if all(t["status"] == "succeeded" for t in got) else None

        try:
            done = wait_for(all_succeeded, 90, "the second fleet to run its 14 tasks")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
    finally:
        fleet.send_signal(signal.SIGTERM)
        code = fleet.wait(60)
    assert code == 0, log.read_text()[-3000:]
    assert [t["result"]["payload"] for t in done] == list(range(14))
    # Only the fleet has the handler, and no hand-back spent an attempt.
    assert all(t["attempts"] == 1 and t["errors"] == [] for t in done), done
