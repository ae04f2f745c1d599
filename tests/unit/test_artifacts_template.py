"""template.yaml checked offline: translated with aws-sam-translator (resources,
parameters, alarms, outputs), then through cfn-lint and `sam validate --lint`."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from stratoq.core.settings import Settings
from stratoq.local.provision import refs, settings_from_outputs, translate
from tests.support.artifacts import ROOT, TEMPLATE, run, tool


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(TEMPLATE.read_text()))


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate(TEMPLATE)


def of_type(template: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def test_template_has_parameters_for_stage_and_sizes(sam: dict[str, Any]) -> None:
    params = sam["Parameters"]
    expected = {
        "StageName": "v1",
        "FunctionMemorySize": 512,
        "WorkerMemorySize": 1024,
        "WorkerBatchSize": 10,
        "WorkerMaxConcurrency": 20,
        "LogRetentionDays": 30,
    }
    for name, default in expected.items():
        assert params[name]["Default"] == default, name
    for name in ("FunctionMemorySize", "WorkerMemorySize", "WorkerBatchSize"):
        assert params[name]["Type"] == "Number"
        assert params[name]["MinValue"] <= params[name]["Default"] <= params[name]["MaxValue"]
    assert re.fullmatch(params["StageName"]["AllowedPattern"], "v1")
    assert not re.fullmatch(params["StageName"]["AllowedPattern"], "v1/../x")


def test_translation_wires_the_size_parameters(cfn: dict[str, Any]) -> None:
    functions = of_type(cfn, "AWS::Lambda::Function")
    assert functions["WorkerFunction"]["Properties"]["MemorySize"] == {"Ref": "WorkerMemorySize"}
    for name in ("ApiFunction", "AuthorizerFunction"):
        assert functions[name]["Properties"]["MemorySize"] == {"Ref": "FunctionMemorySize"}
    # One mapping per priority queue, each with its own concurrency limit.
    esms = {
        m["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: m["Properties"]
        for m in of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "WorkerFunction"}
    }
    assert set(esms) == {"DefaultQueue", "DefaultHighQueue", "DefaultLowQueue"}
    for queue, limit in {
        "DefaultQueue": "WorkerMaxConcurrency",
        "DefaultHighQueue": "WorkerHighMaxConcurrency",
        "DefaultLowQueue": "WorkerLowMaxConcurrency",
    }.items():
        props = esms[queue]
        assert props["BatchSize"] == {"Ref": "WorkerBatchSize"}
        assert props["ScalingConfig"]["MaximumConcurrency"] == {"Ref": limit}
        assert cfn["Parameters"][limit]["MinValue"] == 2  # the least Lambda accepts
        # A batch above 10 messages needs a batching window.
        assert props["MaximumBatchingWindowInSeconds"] >= 1
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_function_handlers_are_unchanged(cfn: dict[str, Any]) -> None:
    functions = of_type(cfn, "AWS::Lambda::Function")
    handlers = {k: v["Properties"]["Handler"] for k, v in functions.items()}
    assert handlers["WorkerFunction"] == "stratoq.handlers.worker.lambda_handler"
    assert handlers["ApiFunction"] == "stratoq.handlers.api.lambda_handler"
    assert handlers["AuthorizerFunction"] == "stratoq.handlers.authorizer.lambda_handler"
    for name, handler in handlers.items():
        module = handler.rsplit(".", 1)[0]
        assert (ROOT / "functions" / (module.replace(".", "/") + ".py")).is_file(), name


def test_api_stage_is_a_parameter_and_writes_json_access_logs(cfn: dict[str, Any]) -> None:
    [stage] = of_type(cfn, "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    assert props["StageName"] == {"Ref": "StageName"}
    # An overall cap on the stage; per key, the usage plan (test_template_security).
    [method] = props["MethodSettings"]
    assert method["ThrottlingRateLimit"] == {"Ref": "ApiStageRateLimit"}
    assert method["ThrottlingBurstLimit"] == {"Ref": "ApiStageBurstLimit"}
    access = props["AccessLogSetting"]
    assert "ApiAccessLogGroup" in refs(access["DestinationArn"])
    # The destination is the log group's ARN without the ":*" GetAtt would add.
    arn = access["DestinationArn"]["Fn::Sub"]
    assert arn.endswith(":log-group:${ApiAccessLogGroup}")
    fields = json.loads(access["Format"])
    assert fields["requestId"] == "$context.requestId"  # API Gateway requires it
    assert {"status", "ip", "tenant", "responseLatency"} <= set(fields)
    group = cfn["Resources"]["ApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_api_url_output_ends_with_the_stage(cfn: dict[str, Any]) -> None:
    url = cfn["Outputs"]["ApiUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://${Api}.execute-api.${AWS::Region}.")
    assert url.endswith("/${StageName}")


def dead_letter_queues(cfn: dict[str, Any]) -> set[str]:
    found = set()
    for res in of_type(cfn, "AWS::SQS::Queue").values():
        redrive = res["Properties"].get("RedrivePolicy")
        if redrive:
            found |= refs(redrive["deadLetterTargetArn"])
    return found


def test_every_dead_letter_queue_has_a_depth_alarm(cfn: dict[str, Any]) -> None:
    dlqs = dead_letter_queues(cfn)
    assert "DefaultDeadLetterQueue" in dlqs
    alarms = of_type(cfn, "AWS::CloudWatch::Alarm").values()
    for dlq in dlqs:
        matching = [
            a["Properties"]
            for a in alarms
            if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and a["Properties"]["Dimensions"]
            == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]
        ]
        assert len(matching) == 1, f"no depth alarm on {dlq}"
        [alarm] = matching
        assert alarm["Namespace"] == "AWS/SQS"
        # Fires on the first message: "> 0".
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["Threshold"] == 0
        assert alarm["EvaluationPeriods"] == 1
        assert alarm["TreatMissingData"] == "notBreaching"
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert cfn["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


def test_alarm_email_subscription_only_with_an_address(cfn: dict[str, Any]) -> None:
    [(_, sub)] = of_type(cfn, "AWS::SNS::Subscription").items()
    assert sub["Condition"] == "HasAlarmEmail"
    assert sub["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert cfn["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert cfn["Parameters"]["AlarmEmail"]["Default"] == ""


def test_translation_has_the_expected_resources(cfn: dict[str, Any]) -> None:
    types = [r["Type"] for r in cfn["Resources"].values()]
    for type_, at_least in {
        "AWS::DynamoDB::Table": 2,
        "AWS::SQS::Queue": 2,
        "AWS::Lambda::Function": 3,
        "AWS::Lambda::EventSourceMapping": 1,
        "AWS::IAM::Role": 3,
        "AWS::ApiGateway::RestApi": 1,
        "AWS::ApiGateway::Stage": 1,
        "AWS::ApiGateway::Deployment": 1,
        "AWS::Logs::LogGroup": 1,
        "AWS::CloudWatch::Alarm": 2,
        "AWS::SNS::Topic": 1,
    }.items():
        assert types.count(type_) >= at_least, type_
    assert not [t for t in types if t.startswith("AWS::Serverless::")]
    # Every Ref/GetAtt/Sub names a resource, a parameter or a pseudo parameter.
    known = set(cfn["Resources"]) | set(cfn["Parameters"])
    for name, res in cfn["Resources"].items():
        missing = {r for r in names_referred_to(res) if not r.startswith("AWS::")} - known
        assert not missing, f"{name} refers to {missing}"


def names_referred_to(node: Any) -> set[str]:
    """Like provision.refs, but a Sub's own variables are not references."""
    found: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "Fn::Sub" and isinstance(v, list):
                found |= refs({"Fn::Sub": v[0]}) - set(v[1]) | names_referred_to(v[1])
            elif k in ("Ref", "Fn::GetAtt", "Fn::Sub", "DependsOn"):
                found |= refs({k: v})
            else:
                found |= names_referred_to(v)
    elif isinstance(node, list):
        for item in node:
            found |= names_referred_to(item)
    return found


def test_outputs(cfn: dict[str, Any]) -> None:
    outputs = cfn["Outputs"]
    # Read by stratoq.local.provision and scripts/bootstrap-key: names and values fixed.
    assert outputs["TasksTableName"]["Value"] == {"Ref": "TasksTable"}
    assert outputs["KeysTableName"]["Value"] == {"Ref": "KeysTable"}
    assert outputs["DefaultQueueUrl"]["Value"] == {"Ref": "DefaultQueue"}
    assert outputs["DefaultDeadLetterQueueUrl"]["Value"] == {"Ref": "DefaultDeadLetterQueue"}
    assert {
        "ApiUrl",
        "ApiId",
        "ApiStageName",
        "ApiAccessLogGroupName",
        "WorkerFunctionArn",
        "ApiFunctionArn",
        "AuthorizerFunctionArn",
        "DefaultQueueArn",
        "DefaultDeadLetterQueueArn",
        "AlarmTopicArn",
        "PollerEnvironment",
    } <= set(outputs)
    # settings_from_outputs takes every <Name>QueueUrl output for a queue: each must be one.
    queues = of_type(cfn, "AWS::SQS::Queue")
    for name, output in outputs.items():
        if name.endswith("QueueUrl"):
            assert output["Value"]["Ref"] in queues, name


def test_poller_environment_output_gives_settings_for_the_stack(
    sam: dict[str, Any], cfn: dict[str, Any]
) -> None:
    sub = cfn["Outputs"]["PollerEnvironment"]["Value"]["Fn::Sub"]
    # A variable map where the text needs a condition (the event bus: PublishEvents).
    text = sub if isinstance(sub, str) else sub[0]
    # As CloudFormation would substitute it for a stack named "prod" in eu-west-1.
    values = {
        "TasksTable": "prod-tasks",
        "KeysTable": "prod-keys",
        "DefaultQueue": "https://sqs/prod-default",
        "DefaultHighQueue": "https://sqs/prod-default-high",
        "DefaultLowQueue": "https://sqs/prod-default-low",
        "TaskDataKey.Arn": "arn:aws:kms:eu-west-1:123456789012:key/k",
        "AWS::Region": "eu-west-1",
        "UnknownTaskGraceSeconds": "600",
        "OrphanGraceSeconds": "900",
        "PauseCacheSeconds": "2",
        "FairQueues": "0",
        "TasksModule": "shop.tasks",
        "EventsQueue": "https://sqs/prod-events",
        "Bus": "prod-events",
    }
    rendered = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)
    env = dict(item.split("=", 1) for item in rendered.split())
    settings = Settings.from_env(env)
    assert settings.tasks_table == "prod-tasks"
    assert settings.keys_table == "prod-keys"
    assert settings.queues == {
        "default": "https://sqs/prod-default",
        "default:high": "https://sqs/prod-default-high",
        "default:low": "https://sqs/prod-default-low",
    }
    assert settings.region == "eu-west-1"
    assert settings.unknown_task_grace_seconds == 600
    assert settings.orphan_grace_seconds == 900
    assert settings.pause_cache_seconds == 2
    assert settings.fair_queues is False
    assert settings.tasks_module == "shop.tasks"
    assert settings.events_queue_url == "https://sqs/prod-events"
    assert settings.event_bus == "prod-events"
    # A poller gets what the Lambda worker gets (rule names are the API's business only).
    lambda_env = sam["Globals"]["Function"]["Environment"]["Variables"]
    wanted = {k for k in lambda_env if k.startswith("STRATOQ_")} - {"STRATOQ_SCHEDULE_PREFIX"}
    assert wanted <= set(env)
    # The same tables as the outputs the local provisioning reads.
    from_outputs = settings_from_outputs(
        Settings(),
        {
            "TasksTableName": "prod-tasks",
            "DefaultQueueUrl": "https://sqs/prod-default",
            "DefaultQueueHighUrl": "https://sqs/prod-default-high",
            "DefaultQueueLowUrl": "https://sqs/prod-default-low",
        },
    )
    assert from_outputs.queues == settings.queues


def test_cfn_lint_passes_and_can_fail(tmp_path: Path) -> None:
    lint = tool("cfn-lint")
    if lint is None:
        pytest.skip("cfn-lint is not installed (dev extras)")
    ok = run(lint, TEMPLATE)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = TEMPLATE.read_text().replace(
        "ComparisonOperator: GreaterThanThreshold", "ComparisonOperator: MoreThan", 1
    )
    assert broken != TEMPLATE.read_text()
    (tmp_path / "template.yaml").write_text(broken)
    bad = run(lint, tmp_path / "template.yaml")
    assert bad.returncode != 0
    assert "MoreThan" in bad.stdout


def sam_cli() -> str | None:
    venv_sam = ROOT / ".venv" / "sam" / "bin" / "sam"
    return str(venv_sam) if venv_sam.is_file() else shutil.which("sam")


def test_sam_validate_lint() -> None:
    sam_bin = sam_cli()
    if sam_bin is None:
        pytest.skip("the SAM CLI is not installed (make validate installs it in .venv/sam)")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    out = run(sam_bin, "validate", "--lint", "--template-file", TEMPLATE, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is a valid SAM Template" in out.stdout + out.stderr
