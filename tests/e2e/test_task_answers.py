"""What task answers show, over HTTP, the SDK and the CLI: final tasks carry no pending
retry, every time has one format, and a listing is a page of tasks."""

from __future__ import annotations

import json

import pytest

from stratoq import Client
from stratoq.sdk.client import Page
from tests.e2e.conftest import DevStack


@pytest.fixture(scope="module")
def client(dev: DevStack) -> Client:
    return Client(dev.api_url, dev.api_key)


def key_for(dev: DevStack, tenant: str, scopes: str) -> str:
    status, body = dev.request("POST", "/v1/keys", {"tenant": tenant, "scopes": scopes.split()})
    assert status == 201, body
    return str(body["key"])


# ------------------------------------------------------------ pages (issue 25, 8)
def test_list_returns_a_page_of_tasks(dev: DevStack) -> None:
    client = Client(dev.api_url, key_for(dev, "pages", "tasks:write"))
    made = [client.enqueue("echo", i, delay_seconds=600).id for i in range(5)]

    page = client.list(limit=2)
    assert isinstance(page, Page)
    assert len(page) == 2
    assert [t.id for t in page] == [t.id for t in page.tasks]
    assert page.next_token
    walked = list(page.pages())
    assert [len(p) for p in walked] == [2, 2, 1]
    assert walked[-1].next_token is None and walked[-1].next_page() is None
    ids = [t.id for p in walked for t in p]
    assert sorted(ids) == sorted(made)
    assert [t.id for t in client.iter_tasks(page_size=2)] == ids

    second = client.list(limit=2, next_token=page.next_token)
    assert [t.id for t in second] == [t.id for t in walked[1]]
    assert [t.id for t in client.list(status="scheduled", limit=10)] == ids


def test_cli_lists_a_page_and_its_next_token(dev: DevStack, client: Client) -> None:
    for i in range(2):
        client.enqueue("echo", i, delay_seconds=600)
    out = dev.cli("tasks", "--limit", "1", "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert len(first["tasks"]) == 1 and first["next_token"]
    out = dev.cli("tasks", "--limit", "1", "--next-token", first["next_token"])
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    assert not line.startswith(first["tasks"][0]["id"])
    assert "more: --next-token" in out.stderr
