"""template.yaml as deployed (translated offline): encryption, least privilege, exposure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratoq.core.settings import Settings
from stratoq.local.provision import settings_from_outputs, translate

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
# Services that hold or move task data: never a wildcard action or resource on them.
DATA_SERVICES = ("dynamodb", "sqs", "kms", "s3", "sns", "secretsmanager")
# Managed policies a role may carry: CloudWatch Logs only.
ALLOWED_MANAGED = ("service-role/AWSLambdaBasicExecutionRole",)


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate(TEMPLATE)


def of_type(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, role in of_type(cfn, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in as_list(policy["PolicyDocument"]["Statement"]):
                yield name, statement
    # Inline policies declared on their own (conditional ones: the broker bridges'),
    # reported under the role they are attached to.
    for policy in of_type(cfn, "AWS::IAM::RolePolicy").values():
        role_name = policy["Properties"]["RoleName"]["Ref"]
        for statement in as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
            yield role_name, statement


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# ------------------------------------------------------------------ encryption
def test_the_data_key_rotates_and_outlives_the_stack(cfn: dict[str, Any]) -> None:
    key = cfn["Resources"]["TaskDataKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    assert cfn["Outputs"]["TaskDataKeyArn"]["Value"] == {"Fn::GetAtt": ["TaskDataKey", "Arn"]}


def test_every_function_knows_the_data_key(cfn: dict[str, Any]) -> None:
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert len(functions) >= 4
    for name, fn in functions.items():
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["STRATOQ_KMS_KEY_ID"] == {"Fn::GetAtt": ["TaskDataKey", "Arn"]}, name
        assert "STRATOQ_ALLOW_UNENCRYPTED" not in env, name


def test_every_table_is_encrypted_with_kms(cfn: dict[str, Any]) -> None:
    tables = of_type(cfn, "AWS::DynamoDB::Table")
    assert set(tables) >= {"TasksTable", "KeysTable"}
    for name, table in tables.items():
        sse = table["Properties"]["SSESpecification"]
        assert sse["SSEEnabled"] is True, name
        assert sse["SSEType"] == "KMS", name


def test_every_queue_is_encrypted_with_the_data_key(cfn: dict[str, Any]) -> None:
    queues = of_type(cfn, "AWS::SQS::Queue")
    assert set(queues) >= {"DefaultQueue", "DefaultDeadLetterQueue"}
    for name, queue in queues.items():
        assert queue["Properties"]["KmsMasterKeyId"] == {"Ref": "TaskDataKey"}, name


def test_local_provisioning_maps_the_key_output_to_a_setting() -> None:
    outputs = {
        "TasksTableName": "t",
        "DefaultQueueUrl": "http://q/default",
        "TaskDataKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k",
    }
    settings = settings_from_outputs(Settings(), outputs)
    assert settings.kms_key_id == outputs["TaskDataKeyArn"]
    assert Settings.from_env(settings.to_env()).kms_key_id == outputs["TaskDataKeyArn"]


# ------------------------------------------------------------- least privilege
def test_no_wildcard_actions_or_resources_on_data(cfn: dict[str, Any]) -> None:
    statements = list(role_statements(cfn))
    assert len(statements) >= 10
    for role, st in statements:
        actions = as_list(st["Action"])
        data = [a for a in actions if a.split(":")[0] in DATA_SERVICES]
        assert "*" not in actions, role
        assert not [a for a in actions if "*" in a.split(":", 1)[-1]], (role, actions)
        if data:
            for resource in as_list(st["Resource"]):
                assert resource != "*", (role, data)
                assert isinstance(resource, dict), (role, resource)  # a Ref/GetAtt/Sub of ours


def test_roles_carry_no_broad_managed_policies(cfn: dict[str, Any]) -> None:
    for name, role in of_type(cfn, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = arn if isinstance(arn, str) else arn["Fn::Sub"]
            assert text.endswith(ALLOWED_MANAGED), (name, text)


def test_kms_use_is_limited_to_the_data_key(cfn: dict[str, Any]) -> None:
    for role, st in role_statements(cfn):
        actions = as_list(st["Action"])
        if any(a.startswith("kms:") for a in actions):
            assert set(actions) <= {"kms:Decrypt", "kms:GenerateDataKey"}, role
            assert as_list(st["Resource"]) == [{"Fn::GetAtt": ["TaskDataKey", "Arn"]}], role


def test_the_authorizer_reads_one_key_record_and_nothing_else(cfn: dict[str, Any]) -> None:
    statements = [st for role, st in role_statements(cfn) if role == "AuthorizerFunctionRole"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": "dynamodb:GetItem",
            "Resource": {"Fn::GetAtt": ["KeysTable", "Arn"]},
        }
    ]


def test_the_worker_cannot_create_or_scan_tasks(cfn: dict[str, Any]) -> None:
    actions = {
        a
        for role, st in role_statements(cfn)
        if role == "WorkerRole"
        for a in as_list(st["Action"])
    }
    # BatchGetItem: a concurrency limit's slots (docs/flow-control.md).
    assert {"dynamodb:UpdateItem", "dynamodb:BatchGetItem", "sqs:ReceiveMessage"} <= actions
    assert "kms:Decrypt" in actions
    assert not {"dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:DeleteItem"} & (
        actions
    )


# -------------------------------------------------------------------- exposure
def test_the_api_is_the_only_public_endpoint(cfn: dict[str, Any]) -> None:
    types = [r["Type"] for r in cfn["Resources"].values()]
    assert types.count("AWS::ApiGateway::RestApi") == 1
    assert "AWS::Lambda::Url" not in types
    for name, perm in of_type(cfn, "AWS::Lambda::Permission").items():
        assert "SourceArn" in perm["Properties"], name  # only its API or its rules invoke
    for node in walk(cfn["Resources"]):
        principal = node.get("Principal")
        assert principal not in ("*", {"AWS": "*"}), node


def test_every_route_but_health_and_the_console_goes_through_the_authorizer(
    cfn: dict[str, Any],
) -> None:
    [api] = of_type(cfn, "AWS::ApiGateway::RestApi").values()
    body = api["Properties"]["Body"]
    routes = {(p, m): op.get("security") for p, ms in body["paths"].items() for m, op in ms.items()}
    # The console's page and static files hold no data (the page calls /v1 with a key).
    for public in ("/health", "/console", "/console/{name}"):
        assert routes.pop((public, "get")) == [], public
    assert routes
    # The authorizer, and an API key for the usage plan (which the authorizer supplies).
    assert all(sec == [{"ApiKeyAuthorizer": []}, {"api_key": []}] for sec in routes.values())
    authorizer = body["securityDefinitions"]["ApiKeyAuthorizer"]["x-amazon-apigateway-authorizer"]
    # No caching of the authorizer's answer: a revoked key is refused on its next request.
    assert authorizer["authorizerResultTtlInSeconds"] == 0
    assert authorizer["identitySource"] == "method.request.header.x-api-key"


# ------------------------------------------------------------ per-key throttling
def test_each_key_is_throttled_by_the_usage_plan_under_the_authorizers_identifier(
    cfn: dict[str, Any],
) -> None:
    [api] = of_type(cfn, "AWS::ApiGateway::RestApi").values()
    # Metered under usageIdentifierKey from the authorizer, never a client-chosen header.
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
    plan = cfn["Resources"]["ApiUsagePlan"]["Properties"]
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "ApiRateLimit"},
        "BurstLimit": {"Ref": "ApiBurstLimit"},
    }
    [stage] = plan["ApiStages"]
    assert stage["ApiId"] == {"Ref": "Api"}
    # The name the API function and the authorizer find the plan and the twins by.
    name = plan["UsagePlanName"]
    functions = of_type(cfn, "AWS::Lambda::Function")
    for fn in ("ApiFunction", "AuthorizerFunction"):
        assert functions[fn]["Properties"]["Environment"]["Variables"]["STRATOQ_USAGE_PLAN"] == name


def test_the_key_twin_policy_touches_api_keys_and_the_plan_only(cfn: dict[str, Any]) -> None:
    policies = of_type(cfn, "AWS::IAM::Policy")
    assert list(policies) == ["ApiKeyTwinsPolicy"]
    props = policies["ApiKeyTwinsPolicy"]["Properties"]
    assert props["Roles"] == [{"Ref": "ApiFunctionRole"}]
    for st in props["PolicyDocument"]["Statement"]:
        assert st["Action"] in ("apigateway:GET", "apigateway:POST", "apigateway:DELETE"), st
        if st["Action"] == "apigateway:GET":  # never a listing of API keys (their values)
            assert st["Resource"]["Fn::Sub"].endswith("::/usageplans"), st
        for resource in as_list(st["Resource"]):
            path = resource["Fn::Sub"].rsplit("::", 1)[1]
            assert path in (
                "/usageplans",
                "/apikeys",
                "/apikeys/*",
                "/usageplans/${ApiUsagePlan}/keys",
            ), path
