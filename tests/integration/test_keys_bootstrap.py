"""`stratoq keys bootstrap` against the emulator over HTTP: the first key of a deployed
stack, straight in the keys table its KeysTableName output names (no API key needed)."""

from __future__ import annotations

import hashlib
import json
import subprocess

from stratoq.adapters import aws
from stratoq.adapters.keys import KeyStore
from stratoq.core.settings import Settings
from tests.conftest import PYTHON, ROOT, subprocess_env

FIXED_KEY = "sq_0123456789ab_" + "b" * 32


def bootstrap(settings: Settings, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = subprocess_env(settings)
    environ.pop("STRATOQ_BOOTSTRAP_KEY", None)
    # Only --endpoint-url points it at the emulator, as a user of an emulator would.
    environ.pop("STRATOQ_AWS_ENDPOINT_URL", None)
    environ.update(env)
    return subprocess.run(
        [PYTHON, "-m", "stratoq", "keys", "bootstrap", *argv],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_items(settings: Settings) -> list[dict[str, dict[str, str]]]:
    out = aws.dynamodb(settings).scan(TableName=settings.keys_table)
    return out["Items"]  # type: ignore[return-value]


def test_bootstrap_stores_an_admin_key_as_its_hash_and_prints_it_once(
    settings: Settings,
) -> None:
    endpoint = settings.aws_endpoint_url or ""
    out = bootstrap(settings, "--endpoint-url", endpoint)
    assert out.returncode == 0, out.stderr
    [key] = out.stdout.splitlines()
    assert key.startswith("sq_")
    [item] = stored_items(settings)
    assert item["pk"]["S"] == hashlib.sha256(key.encode()).hexdigest()
    assert item["tenant"]["S"] == "admin"
    assert item["scopes"]["S"] == "admin"
    assert item["name"]["S"] == "bootstrap"
    secret = key.rsplit("_", 1)[1]
    assert secret not in json.dumps(item)  # only the hash is stored
    key_id = item["key_id"]["S"]
    assert out.stderr == (
        f"key_id {key_id}, tenant admin, scopes admin in {settings.keys_table}: "
        "store the key now, it is not shown again\n"
    )


def test_bootstrap_with_a_chosen_key_is_idempotent(settings: Settings) -> None:
    argv = [
        "--endpoint-url",
        settings.aws_endpoint_url or "",
        "--stack",
        "stratoq",
        "--region",
        settings.region,
        "--tenant",
        "ops",
        "--scopes",
        "tasks:read, tasks:write",
        "--name",
        "first",
    ]
    for _ in range(2):
        out = bootstrap(settings, *argv, STRATOQ_BOOTSTRAP_KEY=FIXED_KEY)
        assert out.returncode == 0, out.stderr
        assert out.stdout == FIXED_KEY + "\n"
        assert "key_id 0123456789ab, tenant ops, scopes tasks:read tasks:write" in out.stderr
    [record] = KeyStore(aws.dynamodb(settings), settings.keys_table).list_keys()
    assert (record.key_id, record.tenant, record.scopes, record.name) == (
        "0123456789ab",
        "ops",
        ("tasks:read", "tasks:write"),
        "first",
    )


def test_bootstrap_refuses_a_missing_stack_and_one_without_a_keys_table(
    settings: Settings,
) -> None:
    endpoint = settings.aws_endpoint_url or ""
    missing = bootstrap(settings, "--endpoint-url", endpoint, "--stack", "nope")
    assert missing.returncode == 2
    assert missing.stderr.startswith("stratoq: there is no stack 'nope' in region")
    assert "Traceback" not in missing.stderr
    # A stack of something else: no KeysTableName output.
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    aws.cloudformation(settings).create_stack(StackName="other", TemplateBody=json.dumps(template))
    other = bootstrap(settings, "--endpoint-url", endpoint, "--stack", "other")
    assert other.returncode == 2
    assert other.stderr.startswith("stratoq: stack other has no KeysTableName output")
    assert len(other.stderr.strip().splitlines()) == 1
    assert stored_items(settings) == []
