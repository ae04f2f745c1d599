"""Workflows on the dev stack, over HTTP, the SDK and the CLI: a chain, a group and a
chord of 50 run to completion, a failure stops the rest, a cancel, tenants apart."""

from __future__ import annotations

import json
from pathlib import Path

from stratoq import Client, NodeRequest, WorkflowRequest, chain, chord, group
from stratoq.core.workflows import WorkflowStatus, child_id
from tests.e2e.conftest import DevStack, key_for


def test_chain_group_and_chord_run_to_completion(client: Client) -> None:
    c = client.submit_workflow(
        chain(*[{"task": "add_to_parent", "payload": {"n": n}} for n in (1, 2, 3)])
    )
    g = client.submit_workflow(group(*[("echo", i) for i in range(5)], name="five"))
    ch = client.submit_workflow(chord([("echo", i) for i in range(50)], ("gather", "sum")))
    assert (c.status, c.node_count, g.name, ch.node_count) == ("running", 3, "five", 51)

    done = client.wait_workflow(c.id, timeout=60)
    assert done.status is WorkflowStatus.SUCCEEDED
    assert [n.result for n in done.nodes or []] == [1, 3, 6]
    assert all(n.started_at and n.finished_at for n in done.nodes or [])

    done = client.wait_workflow(g.id, timeout=60)
    assert done.status is WorkflowStatus.SUCCEEDED
    assert [n.result for n in done.nodes or []] == list(range(5))

    done = client.wait_workflow(ch.id, timeout=120)
    assert done.status is WorkflowStatus.SUCCEEDED, done
    callback = (done.nodes or [])[-1]
    assert callback.depends_on == [f"member-{i}" for i in range(50)]
    assert callback.attempts == 1
    assert callback.result == {"parents": {f"member-{i}": i for i in range(50)}, "payload": "sum"}
    assert done.finished_at is not None


def test_a_failure_stops_the_rest(client: Client) -> None:
    wf = client.submit_workflow(
        WorkflowRequest(
            nodes=[
                NodeRequest(name="bad", task="give_up"),
                NodeRequest(name="next", task="echo", depends_on=["bad"]),
                NodeRequest(name="last", task="echo", depends_on=["next"]),
            ]
        )
    )
    done = client.wait_workflow(wf.id, timeout=60)
    assert done.status is WorkflowStatus.FAILED
    assert [n.status for n in done.nodes or []] == ["failed", "cancelled", "cancelled"]
    assert "can never work" in ((done.nodes or [])[0].error or "")


def test_http_refuses_a_cycle_naming_it(dev: DevStack) -> None:
    body = {
        "nodes": [
            {"name": "a", "task": "echo", "depends_on": ["b"]},
            {"name": "b", "task": "echo", "depends_on": ["a"]},
        ]
    }
    status, answer = dev.request("POST", "/v1/workflows", body)
    assert status == 400, answer
    assert "cycle" in answer["message"]
    assert answer["errors"][0]["field"] == "nodes[0].depends_on"
    body["nodes"][1]["depends_on"] = ["nowhere"]
    status, answer = dev.request("POST", "/v1/workflows", body)
    assert status == 400 and "nowhere" in answer["message"]


def test_the_cli_submits_shows_lists_and_cancels(dev: DevStack, tmp_path: Path) -> None:
    spec = tmp_path / "wf.json"
    spec.write_text(
        json.dumps(
            {
                "name": "cli-chain",
                "nodes": [
                    {"name": "one", "task": "add_to_parent", "payload": {"n": 5}},
                    {
                        "name": "two",
                        "task": "add_to_parent",
                        "payload": {"n": 5},
                        "depends_on": ["one"],
                    },
                ],
            }
        )
    )
    out = dev.cli("workflows", "submit", str(spec), "--wait", "60")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["status"] == "succeeded" and shown["nodes"][1]["result"] == 10
    out = dev.cli("workflows", "show", shown["id"])
    assert json.loads(out.stdout)["nodes"][0]["result"] == 5
    out = dev.cli("workflows", "list", "--limit", "100")
    assert f"{shown['id']}  succeeded" in out.stdout

    slow = tmp_path / "slow.json"
    slow.write_text(
        json.dumps(
            [
                {"name": "later", "task": "sleep", "payload": {"seconds": 8}},
                {"name": "never", "task": "echo", "depends_on": ["later"]},
            ]
        )
    )
    out = dev.cli("workflows", "submit", str(slow))
    assert out.returncode == 0, out.stderr
    out = dev.cli("workflows", "cancel", json.loads(out.stdout)["id"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["nodes"][1]["status"] == "cancelled"
    bad = dev.cli("workflows", "submit", str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "cannot read" in bad.stderr
    bad = dev.cli(
        "workflows", "submit", "--json", '[{"name": "a", "task": "echo", "depends_on": ["a"]}]'
    )
    assert bad.returncode == 2 and "cycle: a -> a" in bad.stderr, bad.stderr


def test_cancel_and_tenants(dev: DevStack) -> None:
    alpha_key = key_for(dev, "wf-alpha", "tasks:write")
    alpha = Client(dev.api_url, alpha_key)
    beta_key = key_for(dev, "wf-beta", "tasks:write")
    wf = alpha.submit_workflow(
        WorkflowRequest(
            nodes=[
                NodeRequest(name="first", task="sleep", payload={"seconds": 2}),
                NodeRequest(name="second", task="echo", depends_on=["first"]),
            ]
        )
    )
    status, _ = dev.request("GET", f"/v1/workflows/{wf.id}", key=beta_key)
    assert status == 404
    status, _ = dev.request("POST", f"/v1/workflows/{wf.id}/cancel", key=beta_key)
    assert status == 404
    beta = Client(dev.api_url, beta_key)
    assert wf.id not in {w.id for w in beta.list_workflows(100)[0]}
    assert wf.id in {w.id for w in alpha.list_workflows(100)[0]}
    cancelled = alpha.cancel_workflow(wf.id)
    assert (cancelled.nodes or [])[1].status == "cancelled"
    done = alpha.wait_workflow(wf.id, timeout=60)
    assert done.status is WorkflowStatus.CANCELLED
    status, answer = dev.request("POST", f"/v1/workflows/{wf.id}/cancel", key=alpha_key)
    assert status == 409, answer


def test_a_handler_spawns_children_and_a_sub_workflow(client: Client) -> None:
    parent = client.enqueue("spawner", {"tasks": 2, "chain": True})
    assert client.wait(parent.id, timeout=60).status == "succeeded"
    kids = [client.wait(child_id(parent.id, i), timeout=60) for i in range(2)]
    assert [(k.parent_id, k.result) for k in kids] == [(parent.id, {"child": i}) for i in range(2)]
    sub = client.wait_workflow(child_id(parent.id, 2), timeout=60)
    assert sub.parent_id == parent.id
    assert [n.result for n in sub.nodes or []] == [1, 3]


def test_cancelling_a_node_task_cancels_its_dependents(dev: DevStack, client: Client) -> None:
    wf = client.submit_workflow(
        WorkflowRequest(
            nodes=[
                NodeRequest(name="first", task="echo", delay_seconds=600),
                NodeRequest(name="second", task="echo", depends_on=["first"]),
                NodeRequest(name="third", task="echo", depends_on=["second"]),
                NodeRequest(name="alone", task="echo", payload="ran"),
            ],
            on_failure="continue",
        )
    )
    first = client.get_workflow(wf.id)
    status, task = dev.request("POST", f"/v1/tasks/{(first.nodes or [])[0].task_id}/cancel")
    assert status == 200 and task["workflow_id"] == wf.id and task["workflow_node"] == "first"
    done = client.wait_workflow(wf.id, timeout=60)
    assert done.status is WorkflowStatus.CANCELLED
    assert [(n.status, n.result) for n in done.nodes or []] == [
        ("cancelled", None),
        ("cancelled", None),
        ("cancelled", None),
        ("succeeded", "ran"),
    ]
