"""Security of the running dev stack, served over HTTPS (`stratoq dev --tls`).

- TLS: the SDK and the CLI trust the stack's generated CA from dev.json;
- the authorization matrix: for every route of the API, each rule (no key, unknown key,
  revoked key -> 401; missing scope -> 403; another tenant's resource -> 404; the owner
  with the scope -> success) is one test, across two tenants;
- no secret in logs or metrics: the last test runs a workload whose payloads and API key
  carry a marker, stops the stack and scans everything it printed and served.

Tests run in file order; the last one stops the stack.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import urllib3

from stratoq import Client
from stratoq.core.models import TaskStatus
from tests.conftest import PYTHON, ROOT
from tests.e2e.conftest import DevStack, cli_in, project_of, start_dev, stop_dev
from tests.support.procs import wait_for

MARKER = "MARKER-5e1f-do-not-log"
# Idempotency keys are lookup keys, stored in clear (docs/security.md); kept out of logs.
IDEM_MARKER = "IDEM-93c0-do-not-log"
_ids = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = start_dev(tmp_path_factory.mktemp("secure"), "--tls", "--metrics-port", str(free_port()))
    facts = json.loads(dev.state_file.read_text())
    dev.http = urllib3.PoolManager(ca_certs=facts["ca_bundle"], timeout=30, retries=False)
    try:
        yield dev
    finally:
        stop_dev(dev)


def ca_bundle(stack: DevStack) -> str:
    return str(json.loads(stack.state_file.read_text())["ca_bundle"])


# ------------------------------------------------------------------------ TLS
def test_the_api_is_served_over_https_only(stack: DevStack) -> None:
    assert stack.api_url.startswith("https://127.0.0.1:")
    assert stack.request("GET", "/health", key=None)[0] == 200
    with pytest.raises(urllib3.exceptions.SSLError):  # not trusted without the dev CA
        urllib3.PoolManager(retries=False).request("GET", stack.api_url + "/health")
    with pytest.raises(urllib3.exceptions.HTTPError):  # no plain HTTP
        urllib3.PoolManager(retries=False).request(
            "GET", stack.api_url.replace("https://", "http://") + "/health"
        )


def test_the_sdk_trusts_the_dev_ca(stack: DevStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATOQ_DEV_FILE", str(stack.state_file))
    for name in ("STRATOQ_API_URL", "STRATOQ_API_KEY", "STRATOQ_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    assert Client().queues()[0]["queue"] == "default"  # everything from dev.json
    assert Client(stack.api_url, stack.api_key).queues()  # the dev URL: its CA is trusted
    explicit = Client(stack.api_url, stack.api_key, ca_bundle=ca_bundle(stack), retries=0)
    assert explicit.queues()
    monkeypatch.setenv("STRATOQ_DEV_FILE", str(stack.state_file.parent / "missing.json"))
    with pytest.raises(urllib3.exceptions.HTTPError, match="CERTIFICATE_VERIFY_FAILED"):
        Client(stack.api_url, stack.api_key, retries=0).queues()


def test_the_cli_trusts_the_dev_ca(stack: DevStack) -> None:
    out = stack.cli("queues")  # api_url, api_key and ca_bundle from dev.json
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["queue"] == "default"
    explicit = [
        "--api-url",
        stack.api_url,
        "--api-key",
        stack.api_key,
        "--ca-bundle",
        ca_bundle(stack),
        "queues",
    ]
    assert stack.cli(*explicit).returncode == 0
    untrusting = dict(os.environ, STRATOQ_DEV_FILE=str(stack.state_file.parent / "none.json"))
    untrusting["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    refused = subprocess.run(
        [PYTHON, "-m", "stratoq", "--api-url", stack.api_url, "--api-key", "x", "queues"],
        env=untrusting,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "not trusted; pass --ca-bundle" in refused.stderr


def test_the_cli_trusts_the_dev_ca_from_a_subdirectory(stack: DevStack, tmp_path: Path) -> None:
    # dev.json names its CA file by an absolute path, so a project's subdirectory (and a
    # copy of the file elsewhere) reaches the same file.
    deep = project_of(stack, tmp_path / "project")
    out = cli_in(deep, "queues")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["queue"] == "default"


# -------------------------------------------------------- authorization matrix
@dataclass
class World:
    """Two tenants, their keys and resources."""

    stack: DevStack
    keys: dict[str, str]  # name -> API key

    def call(self, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
        return self.stack.request(method, path, body, key=key)

    def key(self, tenant: str, scopes: str) -> str:
        status, body = self.call(
            "POST", "/v1/keys", self.keys["operator"], {"tenant": tenant, "scopes": scopes.split()}
        )
        assert status == 201, body
        return str(body["key"])

    def task(self, tenant_key: str, cancelled: bool = False) -> str:
        status, body = self.call(
            "POST", "/v1/tasks", tenant_key, {"name": "echo", "delay_seconds": 600}
        )
        assert status == 202, body
        if cancelled:
            assert self.call("POST", f"/v1/tasks/{body['id']}/cancel", tenant_key)[0] == 200
        return str(body["id"])

    def workflow(self, tenant_key: str) -> str:
        status, body = self.call(
            "POST",
            "/v1/workflows",
            tenant_key,
            {
                "nodes": [
                    # Delayed: the workflow is still running when a case cancels it.
                    {"name": "a", "task": "echo", "delay_seconds": 600},
                    {"name": "b", "task": "echo", "depends_on": ["a"]},
                ]
            },
        )
        assert status == 202, body
        return str(body["id"])

    def schedule(self, tenant_key: str) -> str:
        name = f"nightly-{next(_ids)}"
        status, body = self.call(
            "PUT",
            f"/v1/schedules/{name}",
            tenant_key,
            {"expression": "cron(0 3 * * ? *)", "task": {"name": "echo"}, "enabled": False},
        )
        assert status == 201, body
        return name

    def webhook(self, tenant_key: str) -> str:
        status, body = self.call(
            "POST", "/v1/webhooks", tenant_key, {"url": "https://example.com/hook"}
        )
        assert status == 201, body
        return str(body["id"])


@pytest.fixture(scope="module")
def world(stack: DevStack) -> World:
    w = World(stack, {"operator": stack.api_key})
    for tenant in ("alpha", "beta"):
        for scope in ("tasks:read", "tasks:write", "admin"):
            w.keys[f"{tenant}:{scope}"] = w.key(tenant, scope)
    revoked = w.key("alpha", "admin")
    assert w.call("DELETE", f"/v1/keys/{revoked.split('_')[1]}", w.keys["operator"])[0] == 200
    w.keys["revoked"] = revoked
    w.keys["unknown"] = "sq_0123456789ab_" + "x" * 43
    return w


Path_ = Callable[[World], str]


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as the OpenAPI spec names it
    scope: str | None  # None: public
    ok: int
    path: Path_  # a path to a resource of tenant alpha (made fresh for each call)
    body: Any = None
    owned: bool = False  # names a resource of one tenant: 404 for the other
    # Acts on what every tenant shares (a DLQ): only the operator tenant's admin keys may;
    # the owner is then the operator, and another tenant's admin key gets 403.
    operator: bool = False
    # Called (by the operator) after a call that succeeded, to put shared state back: a
    # queue paused by one case must not hold the tasks of the module's other tests.
    undo: tuple[str, str] | None = None  # (method, path)


def alpha(scope: str) -> str:
    return f"alpha:{scope}"


ROUTES = [
    Route("GET", "/health", None, 200, lambda w: "/health"),
    Route("GET", "/v1/openapi.json", "tasks:read", 200, lambda w: "/v1/openapi.json"),
    Route("GET", "/v1/queues", "tasks:read", 200, lambda w: "/v1/queues"),
    Route("GET", "/v1/tasks", "tasks:read", 200, lambda w: "/v1/tasks"),
    Route("GET", "/v1/whoami", "tasks:read", 200, lambda w: "/v1/whoami"),
    Route(
        "POST",
        "/v1/tasks",
        "tasks:write",
        202,
        lambda w: "/v1/tasks",
        {"name": "echo", "delay_seconds": 600},
    ),
    Route(
        "POST",
        "/v1/tasks/batch",
        "tasks:write",
        202,
        lambda w: "/v1/tasks/batch",
        {"tasks": [{"name": "echo", "delay_seconds": 600}]},
    ),
    Route(
        "GET",
        "/v1/tasks/{task_id}",
        "tasks:read",
        200,
        lambda w: f"/v1/tasks/{w.task(w.keys[alpha('tasks:write')])}",
        owned=True,
    ),
    Route(
        "POST",
        "/v1/tasks/{task_id}/cancel",
        "tasks:write",
        200,
        lambda w: f"/v1/tasks/{w.task(w.keys[alpha('tasks:write')])}/cancel",
        owned=True,
    ),
    Route(
        "POST",
        "/v1/tasks/{task_id}/retry",
        "tasks:write",
        202,
        lambda w: f"/v1/tasks/{w.task(w.keys[alpha('tasks:write')], cancelled=True)}/retry",
        owned=True,
    ),
    Route(
        "POST",
        "/v1/keys",
        "admin",
        201,
        lambda w: "/v1/keys",
        {"tenant": "alpha", "scopes": ["tasks:read"]},
        owned=True,  # a key for alpha: beta's admin may not mint it (403, see below)
    ),
    Route("GET", "/v1/keys", "admin", 200, lambda w: "/v1/keys"),
    Route(
        "POST",
        "/v1/tasks/retry",
        "tasks:write",
        202,
        lambda w: "/v1/tasks/retry",
        {"max_tasks": 1},
    ),
    Route(
        "POST",
        "/v1/tasks/cancel",
        "tasks:write",
        200,
        lambda w: "/v1/tasks/cancel",
        {"name": "no-such-task"},  # matches nothing: the other routes' tasks stay
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/redrive",
        "admin",
        200,
        lambda w: "/v1/queues/default/redrive",
        {"max_messages": 10},
        operator=True,
    ),
    Route(
        "DELETE",
        "/v1/keys/{key_id}",
        "admin",
        200,
        lambda w: f"/v1/keys/{w.key('alpha', 'tasks:read').split('_')[1]}",
        owned=True,
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/pause",
        "admin",
        200,
        lambda w: "/v1/queues/default/pause",
        operator=True,
        undo=("POST", "/v1/queues/default/resume"),
    ),
    Route(
        "POST",
        "/v1/queues/{queue}/resume",
        "admin",
        200,
        lambda w: "/v1/queues/default/resume",
        operator=True,
    ),
    Route(
        "POST",
        "/v1/tasks/names/{name}/pause",
        "admin",
        200,
        lambda w: "/v1/tasks/names/matrix-probe/pause",
        operator=True,
        undo=("POST", "/v1/tasks/names/matrix-probe/resume"),
    ),
    Route(
        "POST",
        "/v1/tasks/names/{name}/resume",
        "admin",
        200,
        lambda w: "/v1/tasks/names/matrix-probe/resume",
        operator=True,
    ),
    Route("GET", "/v1/schedules", "admin", 200, lambda w: "/v1/schedules"),
    Route(
        "PUT",
        "/v1/schedules/{name}",
        "admin",
        201,
        lambda w: f"/v1/schedules/fresh-{next(_ids)}",
        {"expression": "rate(1 day)", "task": {"name": "echo"}, "enabled": False},
    ),
    Route(
        "GET",
        "/v1/schedules/{name}",
        "admin",
        200,
        lambda w: f"/v1/schedules/{w.schedule(w.keys[alpha('admin')])}",
        owned=True,
    ),
    Route(
        "DELETE",
        "/v1/schedules/{name}",
        "admin",
        200,
        lambda w: f"/v1/schedules/{w.schedule(w.keys[alpha('admin')])}",
        owned=True,
    ),
    Route(
        "POST",
        "/v1/schedules/{name}/trigger",
        "admin",
        202,
        lambda w: f"/v1/schedules/{w.schedule(w.keys[alpha('admin')])}/trigger",
        owned=True,
    ),
]
ROUTES += [
    Route("GET", "/v1/workflows", "tasks:read", 200, lambda w: "/v1/workflows"),
    Route(
        "POST",
        "/v1/workflows",
        "tasks:write",
        202,
        lambda w: "/v1/workflows",
        {"nodes": [{"name": "a", "task": "echo", "delay_seconds": 600}]},
    ),
    Route(
        "GET",
        "/v1/workflows/{workflow_id}",
        "tasks:read",
        200,
        lambda w: f"/v1/workflows/{w.workflow(w.keys[alpha('tasks:write')])}",
        owned=True,
    ),
    Route(
        "POST",
        "/v1/workflows/{workflow_id}/cancel",
        "tasks:write",
        200,
        lambda w: f"/v1/workflows/{w.workflow(w.keys[alpha('tasks:write')])}/cancel",
        owned=True,
    ),
]
ROUTES += [
    Route("GET", "/v1/webhooks", "admin", 200, lambda w: "/v1/webhooks"),
    Route(
        "POST",
        "/v1/webhooks",
        "admin",
        201,
        lambda w: "/v1/webhooks",
        {"url": "https://example.com/hook", "events": ["failed"]},
    ),
    Route(
        "DELETE",
        "/v1/webhooks/{webhook_id}",
        "admin",
        200,
        lambda w: f"/v1/webhooks/{w.webhook(w.keys[alpha('admin')])}",
        owned=True,
    ),
    Route(
        "GET",
        "/v1/webhooks/{webhook_id}/failures",
        "admin",
        200,
        lambda w: f"/v1/webhooks/{w.webhook(w.keys[alpha('admin')])}/failures",
        owned=True,
    ),
]
ROUTES += [
    Route("GET", "/v1/limits", "tasks:read", 200, lambda w: "/v1/limits"),
    Route(
        "PUT",
        "/v1/queues/{queue}/limits",
        "admin",
        200,
        lambda w: "/v1/queues/default/limits",
        {"max_concurrency": 1000},
        operator=True,
        undo=("DELETE", "/v1/queues/default/limits"),
    ),
    Route(
        "DELETE",
        "/v1/queues/{queue}/limits",
        "admin",
        200,
        lambda w: "/v1/queues/default/limits",
        operator=True,
    ),
    Route(
        "PUT",
        "/v1/tasks/names/{name}/limits",
        "admin",
        200,
        lambda w: "/v1/tasks/names/matrix-probe/limits",
        {"rate_limit": "1000/s"},
        operator=True,
        undo=("DELETE", "/v1/tasks/names/matrix-probe/limits"),
    ),
    Route(
        "DELETE",
        "/v1/tasks/names/{name}/limits",
        "admin",
        200,
        lambda w: "/v1/tasks/names/matrix-probe/limits",
        operator=True,
    ),
]
WEAKER = {"tasks:write": "tasks:read", "admin": "tasks:write"}


def cases() -> Iterator[Any]:
    for r in ROUTES:
        name = f"{r.method} {r.template}"
        if r.scope is None:
            yield pytest.param(r, "public", id=f"{name} public")
            continue
        for rule in ("no key", "unknown key", "revoked key"):
            yield pytest.param(r, rule, id=f"{name} {rule}")
        if r.scope in WEAKER:
            yield pytest.param(r, "missing scope", id=f"{name} missing scope")
        if r.owned:
            yield pytest.param(r, "other tenant", id=f"{name} other tenant")
        if r.operator:
            yield pytest.param(r, "non-operator admin", id=f"{name} non-operator admin")
        yield pytest.param(r, "owner", id=f"{name} owner")


EXPECTED = {"no key": 401, "unknown key": 401, "revoked key": 401, "missing scope": 403}


@pytest.mark.parametrize(("route", "rule"), list(cases()))
def test_authorization(world: World, route: Route, rule: str) -> None:
    path = route.path(world)
    scope = route.scope or "tasks:read"
    key = {
        "public": lambda: None,
        "no key": lambda: None,
        "unknown key": lambda: world.keys["unknown"],
        "revoked key": lambda: world.keys["revoked"],
        "missing scope": lambda: world.keys[alpha(WEAKER[scope])],
        "other tenant": lambda: world.keys[f"beta:{scope}"],
        "non-operator admin": lambda: world.keys[alpha("admin")],
        "owner": lambda: world.keys["operator" if route.operator else alpha(scope)],
    }[rule]()
    status, body = world.call(route.method, path, key, route.body)
    if route.undo is not None and status < 300:
        assert world.call(*route.undo, world.keys["operator"])[0] == 200
    if rule in EXPECTED:
        assert status == EXPECTED[rule], body
        if status == 401:
            assert body == {"message": "Unauthorized"}
        else:
            assert route.scope in body["message"]
    elif rule == "non-operator admin":
        assert status == 403, body
        assert "operator" in body["message"]
    elif rule == "other tenant":
        # Another tenant's resource is missing; a key for another tenant is forbidden.
        assert status == (403 if route.template == "/v1/keys" else 404), body
    else:
        assert status == route.ok, body


def test_the_matrix_covers_every_route_of_the_spec(stack: DevStack) -> None:
    status, spec = stack.request("GET", "/v1/openapi.json")
    assert status == 200
    in_spec = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert in_spec == {(r.method, r.template) for r in ROUTES}


def test_lists_show_only_the_callers_tenant(world: World) -> None:
    a_task = world.task(world.keys[alpha("tasks:write")])
    a_schedule = world.schedule(world.keys[alpha("admin")])
    beta_admin = world.keys["beta:admin"]
    _, tasks = world.call("GET", "/v1/tasks?limit=1000", beta_admin)
    assert a_task not in {t["id"] for t in tasks["tasks"]}
    _, schedules = world.call("GET", "/v1/schedules", beta_admin)
    assert a_schedule not in {s["name"] for s in schedules["schedules"]}
    a_workflow = world.workflow(world.keys[alpha("tasks:write")])
    _, workflows = world.call("GET", "/v1/workflows?limit=100", beta_admin)
    assert a_workflow not in {w["id"] for w in workflows["workflows"]}
    _, keys = world.call("GET", "/v1/keys", beta_admin)
    assert {k["tenant"] for k in keys["keys"]} == {"beta"}
    assert world.call("GET", "/v1/keys?tenant=alpha", beta_admin)[0] == 403
    # The operator's admin key (the bootstrap key's tenant) manages every tenant's keys.
    _, everyone = world.call("GET", "/v1/keys", world.keys["operator"])
    assert {"alpha", "beta"} <= {k["tenant"] for k in everyone["keys"]}
    # A forged page token naming another tenant's partition is refused.
    _, page = world.call("GET", "/v1/tasks?limit=1", world.keys[alpha("tasks:read")])
    assert page["next_token"]
    status, body = world.call(
        "GET", f"/v1/tasks?limit=1&next_token={page['next_token']}", beta_admin
    )
    assert status == 400, body


def test_whoami_names_the_keys_tenant_and_scopes(world: World) -> None:
    expected = {
        "operator": {"tenant": "default", "scopes": ["admin"], "operator": True},
        "alpha:admin": {"tenant": "alpha", "scopes": ["admin"], "operator": False},
        "beta:tasks:read": {"tenant": "beta", "scopes": ["tasks:read"], "operator": False},
    }
    for name, identity in expected.items():
        assert world.call("GET", "/v1/whoami", world.keys[name]) == (200, identity)


# --------------------------------------------------------- nothing leaks out
def test_no_secret_in_logs_or_metrics(stack: DevStack) -> None:
    """Runs last: it stops the stack to read everything the stack wrote."""
    operator = Client(stack.api_url, stack.api_key, ca_bundle=ca_bundle(stack))
    created = operator.create_key("secretive", ["tasks:write"], name="ci")
    tenant_key = str(created["key"])
    client = Client(stack.api_url, tenant_key, ca_bundle=ca_bundle(stack))
    tasks = [
        client.enqueue("echo", {"card": MARKER}, idempotency_key=IDEM_MARKER),
        client.enqueue("fail", {"times": 1, "note": MARKER}, backoff={"base_seconds": 0}),
        client.enqueue("give_up", {"note": MARKER}),
        *client.enqueue_many([{"name": "echo", "payload": [MARKER, i]} for i in range(5)]),
    ]
    done = [client.wait(t.id, timeout=60) for t in tasks]
    assert [d.status for d in done] == [TaskStatus.SUCCEEDED] * 2 + [TaskStatus.FAILED] + [
        TaskStatus.SUCCEEDED
    ] * 5
    assert done[0].result == {"card": MARKER}  # the owner reads it back in clear
    # Refused requests that carry the marker: as a key, and in an invalid body.
    assert stack.request("GET", "/v1/tasks", key=f"sq_0123456789ab_{MARKER}xxxx")[0] == 401
    invalid = {"name": "echo", "bad": MARKER}
    assert stack.request("POST", "/v1/tasks", invalid, key=tenant_key)[0] == 422
    # At rest: the emulator's table holds ciphertext only.
    facts = json.loads(stack.state_file.read_text())
    db = boto3.client(
        "dynamodb",
        endpoint_url=facts["aws_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    rows = db.scan(TableName="stratoq-tasks")["Items"]
    assert len(rows) >= len(tasks)
    assert MARKER not in repr(rows)
    metrics_url = facts["metrics_url"]
    metrics = wait_for(
        lambda: urllib3.PoolManager().request("GET", metrics_url).data.decode(), 10, "metrics"
    )
    assert "stratoq_" in metrics

    assert stop_dev(stack) == 0
    log = stack.log.read_text(errors="replace")
    assert "task succeeded" in log  # the workload did log, and that log is what we scan
    secret = tenant_key.split("_", 2)[2]
    for text, where in ((log, "the dev stack's output"), (metrics, "/metrics")):
        assert MARKER not in text, f"payload marker in {where}"
        assert IDEM_MARKER not in text, f"idempotency key in {where}"
        assert tenant_key not in text and secret not in text, f"API key in {where}"
    # The bootstrap admin key is printed on purpose, in the start-up banner only.
    banner_lines = [line for line in log.splitlines() if stack.api_key in line]
    assert banner_lines
    assert all(line.startswith(("  API key:", "try: curl")) for line in banner_lines), banner_lines


def test_state_file_is_private(stack: DevStack) -> None:
    assert Path(stack.state_file).stat().st_mode & 0o077 == 0
    key = Path(json.loads(stack.state_file.read_text())["ca_bundle"]).parent / "server.key"
    assert key.stat().st_mode & 0o077 == 0
