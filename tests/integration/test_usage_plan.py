"""Per-key throttling on AWS: every stratoq key has a twin in the stack's usage plan.

The twins live in API Gateway (moto's, over HTTP here); the authorizer names a key's
twin in `usageIdentifierKey`, which is what API Gateway meters and throttles under.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from stratoq.adapters import aws
from stratoq.adapters.keys import KeyStore, UsagePlanKeys, key_store, usage_identifier
from stratoq.core.errors import ConfigError
from stratoq.core.settings import Settings
from stratoq.handlers.authorizer import Authorizer
from stratoq.services.app import Services

PLAN = "stack-per-key"


@pytest.fixture
def plan(settings: Settings) -> dict[str, Any]:
    gateway = aws.apigateway(settings)
    for existing in gateway.get_usage_plans()["items"]:
        gateway.delete_usage_plan(usagePlanId=existing["id"])
    for key in gateway.get_api_keys()["items"]:
        gateway.delete_api_key(apiKey=key["id"])
    return gateway.create_usage_plan(name=PLAN, throttle={"rateLimit": 5.0, "burstLimit": 10})


def twins(settings: Settings, plan_id: str) -> dict[str, str]:
    """name -> value of the API keys in the plan."""
    gateway = aws.apigateway(settings)
    in_plan = {k["id"] for k in gateway.get_usage_plan_keys(usagePlanId=plan_id)["items"]}
    keys = gateway.get_api_keys(includeValues=True)["items"]
    return {k["name"]: k["value"] for k in keys if k["id"] in in_plan}


def test_a_new_key_gets_a_twin_in_the_plan_and_revoking_deletes_it(
    settings: Settings, plan: dict[str, Any]
) -> None:
    keys = key_store(settings.with_(usage_plan=PLAN))
    key, record = keys.create("acme", ["tasks:write"], "ci")
    assert twins(settings, plan["id"]) == {
        f"{PLAN}-{record.key_id}": usage_identifier(PLAN, record.key_id)
    }

    keys.revoke(record.key_id)
    assert keys.lookup(key) is None
    assert twins(settings, plan["id"]) == {}
    assert aws.apigateway(settings).get_api_keys()["items"] == []  # deleted, not only unplanned


def test_storing_a_fixed_key_twice_keeps_one_twin(settings: Settings, plan: dict[str, Any]) -> None:
    keys = key_store(settings.with_(usage_plan=PLAN))
    fixed = "sq_0123456789ab_" + "s" * 32
    keys.create("default", ["admin"], key=fixed)
    keys.create("default", ["admin"], key=fixed)
    assert list(twins(settings, plan["id"])) == [f"{PLAN}-0123456789ab"]


def test_a_missing_plan_stores_no_key(settings: Settings, plan: dict[str, Any]) -> None:
    keys = KeyStore(
        aws.dynamodb(settings),
        settings.keys_table,
        UsagePlanKeys(aws.apigateway(settings), "no-such-plan"),
    )
    with pytest.raises(ConfigError, match="no API Gateway usage plan named 'no-such-plan'"):
        keys.create("acme", ["tasks:read"])
    assert KeyStore(aws.dynamodb(settings), settings.keys_table).list_keys() == []
    assert aws.apigateway(settings).get_api_keys()["items"] == []  # no orphan twin


def test_a_key_that_cannot_be_stored_leaves_no_twin(
    settings: Settings, plan: dict[str, Any]
) -> None:
    keys = key_store(settings.with_(usage_plan=PLAN, keys_table="no-such-table"))
    with pytest.raises(ClientError):
        keys.create("acme", ["tasks:read"])
    assert aws.apigateway(settings).get_api_keys()["items"] == []


def authorize(key: str) -> dict[str, Any]:
    """Ask the authorizer a Lambda process would build from this environment."""
    event = {
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/v1/GET/v1/tasks",
        "headers": {"x-api-key": key},
    }
    return Authorizer(Services.from_env())(event, None)


@pytest.mark.parametrize("with_plan", [True, False])
def test_the_authorizer_names_the_twin_only_where_there_is_a_plan(
    settings: Settings, plan: dict[str, Any], monkeypatch: pytest.MonkeyPatch, with_plan: bool
) -> None:
    used = settings.with_(usage_plan=PLAN if with_plan else None)
    key, record = key_store(used).create("acme", ["tasks:read"])
    for name, value in used.to_env().items():
        monkeypatch.setenv(name, value)
    answer = authorize(key)
    assert answer["context"]["tenant"] == "acme"
    if with_plan:
        assert (
            answer["usageIdentifierKey"] == twins(settings, plan["id"])[f"{PLAN}-{record.key_id}"]
        )
    else:
        assert "usageIdentifierKey" not in answer
