"""Offline SAM translation of template.yaml and the emulator subset of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stratoq.core.errors import ConfigError
from stratoq.core.settings import Settings
from stratoq.local.provision import (
    LOCAL_TYPES,
    local_template,
    refs,
    settings_from_outputs,
    translate,
)

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate(TEMPLATE)


def of_type(template: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


# ---------------------------------------------------------------------- translate
def test_translate_yields_the_template_resources(cfn: dict[str, Any]) -> None:
    types = {k: v["Type"] for k, v in cfn["Resources"].items()}
    assert types["TasksTable"] == "AWS::DynamoDB::Table"
    assert types["DefaultQueue"] == "AWS::SQS::Queue"
    assert types["DefaultDeadLetterQueue"] == "AWS::SQS::Queue"
    # The SAM function became a plain Lambda function with a role.
    assert types["WorkerFunction"] == "AWS::Lambda::Function"
    assert "AWS::IAM::Role" in types.values()
    assert "Transform" not in cfn
    assert not any(t.startswith("AWS::Serverless::") for t in types.values())


def test_translate_creates_the_sqs_event_source_mapping(cfn: dict[str, Any]) -> None:
    mappings = of_type(cfn, "AWS::Lambda::EventSourceMapping")
    [esm] = [
        m
        for m in mappings.values()
        if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["DefaultQueue", "Arn"]}
    ]
    props = esm["Properties"]
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["DefaultQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "WorkerFunction"}
    assert props["BatchSize"] == {"Ref": "WorkerBatchSize"}  # a parameter, default 10
    assert refs(esm) >= {"DefaultQueue", "WorkerFunction"}


def test_translate_keeps_the_dead_letter_redrive(cfn: dict[str, Any]) -> None:
    redrive = cfn["Resources"]["DefaultQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DefaultDeadLetterQueue", "Arn"]}
    assert refs(cfn["Resources"]["DefaultQueue"]) == {
        "DefaultDeadLetterQueue",
        "MaxReceiveCount",
        "TaskDataKey",  # its server-side encryption key
    }


def test_translate_replaces_the_code_uri_with_an_s3_location(cfn: dict[str, Any]) -> None:
    code = cfn["Resources"]["WorkerFunction"]["Properties"]["Code"]
    assert code == {"S3Bucket": "stratoq-local", "S3Key": "code.zip"}


def test_translate_of_a_missing_template_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STRATOQ_TEMPLATE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="STRATOQ_TEMPLATE"):
        translate()


# ------------------------------------------------------------------ local_template
def test_local_template_keeps_only_the_table_and_queues(cfn: dict[str, Any]) -> None:
    local = local_template(cfn)
    assert {"TasksTable", "DefaultQueue", "DefaultDeadLetterQueue"} <= set(local["Resources"])
    assert all(r["Type"] in LOCAL_TYPES for r in local["Resources"].values())
    # The kept resources are untouched copies, but for rules naming a left-out function.
    for name, res in local["Resources"].items():
        if res["Type"] != "AWS::Events::Rule":
            assert res == cfn["Resources"][name]
    # Every emulated resource of the input that refers to nothing left out is kept.
    dropped = set(cfn["Resources"]) - set(local["Resources"])
    for name, res in cfn["Resources"].items():
        if res["Type"] in LOCAL_TYPES and not refs(res) & dropped:
            assert name in local["Resources"]


def test_local_template_drops_lambda_iam_and_esm(cfn: dict[str, Any]) -> None:
    left_out = {"AWS::Lambda::Function", "AWS::IAM::Role", "AWS::Lambda::EventSourceMapping"}
    # The input has them (the test would mean nothing otherwise) ...
    assert {r["Type"] for r in cfn["Resources"].values()} >= left_out
    # ... the local template has none, nor anything else the emulator does not create.
    local = local_template(cfn)
    assert not {r["Type"] for r in local["Resources"].values()} & left_out
    assert "WorkerFunction" not in local["Resources"]
    assert not of_type(local, "AWS::Lambda::EventSourceMapping")


def test_local_template_drops_outputs_of_dropped_resources(cfn: dict[str, Any]) -> None:
    assert "WorkerFunctionArn" in cfn["Outputs"]
    local = local_template(cfn)
    assert {"TasksTableName", "DefaultQueueUrl", "DefaultDeadLetterQueueUrl"} <= set(
        local["Outputs"]
    )
    assert "WorkerFunctionArn" not in local["Outputs"]
    dropped = set(cfn["Resources"]) - set(local["Resources"])
    for name, output in cfn["Outputs"].items():
        # An output is kept exactly when it refers to no left-out resource.
        assert (name in local["Outputs"]) == (not refs(output) & dropped), name


def test_local_template_keeps_header_and_parameters(cfn: dict[str, Any]) -> None:
    local = local_template(cfn)
    assert local["AWSTemplateFormatVersion"] == "2010-09-09"
    assert local["Parameters"] == cfn["Parameters"]
    assert {"WorkerMaxConcurrency", "MaxReceiveCount"} <= set(local["Parameters"])
    assert "Transform" not in local


def test_local_template_does_not_modify_its_input(cfn: dict[str, Any]) -> None:
    before = set(cfn["Resources"]), set(cfn["Outputs"])
    local_template(cfn)
    assert (set(cfn["Resources"]), set(cfn["Outputs"])) == before


def test_local_template_drops_local_resources_that_depend_on_dropped_ones() -> None:
    cfn = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Fn": {"Type": "AWS::Lambda::Function", "Properties": {}},
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {}},
            # Refers to the function: must go.
            "Policy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {
                    "Queues": [{"Ref": "Q"}],
                    "PolicyDocument": {"Principal": {"AWS": {"Fn::GetAtt": "Fn.Arn"}}},
                },
            },
            # Depends on a dropped local resource only: goes too (transitively).
            "Alias": {"Type": "AWS::KMS::Alias", "DependsOn": "Policy", "Properties": {}},
            # Refers to a kept resource and a parameter: stays.
            "Q2": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"QueueName": {"Fn::Sub": "${Q.QueueName}-${Stage}"}},
            },
        },
        "Outputs": {
            "QUrl": {"Value": {"Ref": "Q"}},
            "PolicyId": {"Value": {"Ref": "Policy"}},
            "Region": {"Value": {"Ref": "AWS::Region"}},
            "Stage": {"Value": {"Ref": "Stage"}},
        },
    }
    local = local_template(cfn)
    assert set(local["Resources"]) == {"Q", "Q2"}
    assert set(local["Outputs"]) == {"QUrl", "Region", "Stage"}
    assert "Transform" not in local


# ---------------------------------------------------------------------------- refs
@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"Ref": "A"}, {"A"}),
        ({"Fn::GetAtt": ["B", "Arn"]}, {"B"}),
        ({"Fn::GetAtt": "C.Arn"}, {"C"}),
        ({"Fn::Sub": "arn:${D}:${E.Arn}/${AWS::Region}/${!Literal}"}, {"D", "E"}),
        ({"Fn::Sub": ["${X}-${Var}", {"Var": {"Ref": "F"}}]}, {"X", "Var", "F"}),
        ({"DependsOn": "G"}, {"G"}),
        ({"DependsOn": ["H", "I"]}, {"H", "I"}),
        (
            {"Type": "T", "Properties": {"L": [{"Ref": "J"}, {"M": {"Fn::GetAtt": ["K", "X"]}}]}},
            {"J", "K"},
        ),
        ({"Properties": {"Name": "Ref", "Other": ["Ref", "plain"]}}, set()),
        ("Ref", set()),
        ([], set()),
    ],
)
def test_refs(node: Any, expected: set[str]) -> None:
    assert refs(node) == expected


# ------------------------------------------------------------- settings_from_outputs
def test_settings_from_outputs_maps_table_and_queues() -> None:
    base = Settings(lease_seconds=7)
    s = settings_from_outputs(
        base,
        {
            "TasksTableName": "stratoq-tasks",
            "DefaultQueueUrl": "http://q/stratoq-default",
            "DefaultDeadLetterQueueUrl": "http://q/stratoq-default-dlq",
            "HighPriorityQueueUrl": "http://q/stratoq-high",
            "WorkerFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:w",
        },
    )
    assert s.tasks_table == "stratoq-tasks"
    assert s.queues == {
        "default": "http://q/stratoq-default",
        "high-priority": "http://q/stratoq-high",
    }
    assert s.lease_seconds == 7  # everything else is kept


def test_settings_from_outputs_maps_priority_queues_unambiguously() -> None:
    s = settings_from_outputs(
        Settings(),
        {
            "TasksTableName": "t",
            "DefaultQueueUrl": "http://q/default",
            "DefaultQueueHighUrl": "http://q/default-high",
            "DefaultQueueLowUrl": "http://q/default-low",
            # A logical queue that happens to be called default-high, and its own
            # high-priority queue: neither is mistaken for the default queue's.
            "DefaultHighQueueUrl": "http://q/logical-default-high",
            "DefaultHighQueueHighUrl": "http://q/logical-default-high-high",
            # A priority queue whose logical queue is missing would be unreachable.
            "EmailsQueueLowUrl": "http://q/emails-low",
        },
    )
    assert s.queues == {
        "default": "http://q/default",
        "default:high": "http://q/default-high",
        "default:low": "http://q/default-low",
        "default-high": "http://q/logical-default-high",
        "default-high:high": "http://q/logical-default-high-high",
    }


def test_settings_from_outputs_replaces_configured_queues() -> None:
    base = Settings(queues={"default": "old", "gone": "old-gone"})
    s = settings_from_outputs(base, {"TasksTableName": "t", "DefaultQueueUrl": "new"})
    assert s.queues == {"default": "new"}


@pytest.mark.parametrize(
    "outputs",
    [
        {"DefaultQueueUrl": "http://q/d"},
        {"TasksTableName": "t"},
        {"TasksTableName": "t", "DefaultDeadLetterQueueUrl": "http://q/dlq"},
    ],
)
def test_settings_from_outputs_requires_table_and_default_queue(outputs: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="DefaultQueueUrl"):
        settings_from_outputs(Settings(), outputs)


def test_rules_targeting_a_function_stay_with_a_local_arn(cfn: dict[str, Any]) -> None:
    from stratoq.local.provision import local_function_arn

    local = local_template(cfn, "eu-west-1")
    rules = {k: v for k, v in local["Resources"].items() if v["Type"] == "AWS::Events::Rule"}
    assert rules, "the template's static schedule rule is kept"
    for rule in rules.values():
        arns = {t["Arn"] for t in rule["Properties"]["Targets"]}
        assert arns == {local_function_arn("SchedulerFunction", "eu-west-1")}
