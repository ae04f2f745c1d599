"""Provision template.yaml on an emulator: the same SAM template that deploys to AWS.

The template is translated offline with aws-sam-translator, then created as a
CloudFormation stack on the emulator, keeping the resource types it emulates and leaving
out what the local control plane replaces (Lambda functions and their event source
mappings, API Gateway, IAM), together with everything that refers to them.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any

from stratoq import project
from stratoq.core.errors import ConfigError
from stratoq.core.priority import queue_key, split_key
from stratoq.core.settings import Settings

# Emulated faithfully enough to create from the template (see docs/architecture.md).
LOCAL_TYPES = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::Events::Rule",
        "AWS::Events::EventBus",
    }
)
LOCAL_ACCOUNT = "123456789012"


def local_function_arn(logical_id: str, region: str = "us-east-1") -> str:
    """The ARN a left-out Lambda function stands under locally (rule targets name it)."""
    return f"arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:stratoq-{logical_id}"


def _with_function_arns(node: Any, functions: set[str], region: str) -> Any:
    if isinstance(node, dict):
        target = node.get("Fn::GetAtt")
        if isinstance(target, list) and target[0] in functions and target[1] == "Arn":
            return local_function_arn(target[0], region)
        return {k: _with_function_arns(v, functions, region) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_function_arns(v, functions, region) for v in node]
    return node


# Receive wait of the dev stack's pollers and of those `stratoq provision` sets up:
# short, as an empty receive on an emulator costs nothing.
DEV_POLL_WAIT_SECONDS = 2
_SUB_REF = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


class _NoManagedPolicies:
    """Offline stand-in for the IAM lookup of managed policy ARNs."""

    def load(self) -> dict[str, str]:
        return {}


def template_path() -> Path:
    """STRATOQ_TEMPLATE, else the project's template.yaml, else the packaged one
    (stratoq.project.template_path, from the current directory)."""
    return project.template_path(Path.cwd())


def translate(path: Path | None = None) -> dict[str, Any]:
    """The CloudFormation that `sam deploy` would create from the SAM template."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    text = (path or template_path()).read_text()
    # Translating takes a good part of a second; a process (the test suite) that asks
    # again for the same text gets its own copy of the first answer.
    return copy.deepcopy(_translated(text, os.environ["AWS_DEFAULT_REGION"]))


@functools.lru_cache(maxsize=4)
def _translated(text: str, region: str) -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    sam = yaml_parse(text)
    # `sam package` would upload the code and put its S3 URI here; the translator
    # insists on one, and nothing local reads it.
    for holder in [sam.get("Globals", {}).get("Function", {})] + [
        r.get("Properties", {}) for r in sam.get("Resources", {}).values()
    ]:
        if isinstance(holder.get("CodeUri"), str):
            holder["CodeUri"] = "s3://stratoq-local/code.zip"
    return dict(transform(sam, {}, _NoManagedPolicies()))


def refs(node: Any) -> set[str]:
    """Logical ids a template fragment refers to (Ref, GetAtt, Sub, DependsOn)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else str(value).split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(_SUB_REF.findall(text))
                if isinstance(value, list):
                    found.update(refs(value[1:]))
            elif key == "DependsOn":
                found.update([value] if isinstance(value, str) else value)
            else:
                found.update(refs(value))
    elif isinstance(node, list):
        for item in node:
            found.update(refs(item))
    return found


def local_template(cfn: dict[str, Any], region: str = "us-east-1") -> dict[str, Any]:
    """Keep the emulated resources that do not depend on a left-out one.

    Lambda functions are left out, but rules that target them stay: their targets name
    the function by a local ARN (`local_function_arn`), which the local rule clock
    recognises and serves in-process.
    """
    functions = {
        k for k, v in cfn.get("Resources", {}).items() if v.get("Type") == "AWS::Lambda::Function"
    }
    cfn = {**cfn, "Resources": _with_function_arns(cfn.get("Resources", {}), functions, region)}
    resources: dict[str, Any] = dict(cfn.get("Resources", {}))
    kept = {k: v for k, v in resources.items() if v.get("Type") in LOCAL_TYPES}
    changed = True
    while changed:
        changed = False
        for name, res in list(kept.items()):
            if any(r in resources and r not in kept for r in refs(res)):
                del kept[name]
                changed = True
    outputs = {
        k: v
        for k, v in cfn.get("Outputs", {}).items()
        if all(r not in resources or r in kept for r in refs(v))
    }
    out = {k: v for k, v in cfn.items() if k not in ("Resources", "Outputs", "Transform")}
    out["Resources"] = kept
    out["Outputs"] = outputs
    return out


def provision(
    settings: Settings,
    stack: str = "stratoq",
    template: Path | None = None,
    *,
    mocked: bool = False,
) -> Settings:
    """Create the stack on the emulator at settings.aws_endpoint_url (idempotent).

    Returns settings pointing at the created table and queues. `mocked`: moto's
    in-process mock answers every AWS call (eager mode), so there is no endpoint, and
    no risk of creating the stack on real AWS, which the endpoint check guards against.
    """
    import json

    from stratoq.adapters import aws

    if not settings.aws_endpoint_url and not mocked:
        raise ConfigError("provisioning is for an emulator: set STRATOQ_AWS_ENDPOINT_URL")
    cfn = aws.client("cloudformation", settings)
    try:
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except cfn.exceptions.ClientError:
        body = json.dumps(local_template(translate(template), settings.region))
        cfn.create_stack(StackName=stack, TemplateBody=body)
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    if described["StackStatus"] == "CREATE_IN_PROGRESS":
        # moto creates stacks at once; LocalStack (docker-compose) creates them in the
        # background, so wait for it there.
        cfn.get_waiter("stack_create_complete").wait(
            StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
        )
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    if described["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise ConfigError(f"stack {stack} is {described['StackStatus']} on the emulator")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    return settings_from_outputs(settings, outputs)


def settings_from_outputs(settings: Settings, outputs: dict[str, str]) -> Settings:
    """Map stack outputs to settings: TasksTableName, <Name>QueueUrl per logical queue
    (and <Name>QueueHighUrl / <Name>QueueLowUrl for its priority queues), KeysTableName,
    TaskDataKeyArn (the KMS key that encrypts payloads).

    The priority suffix comes after `Queue`, so no logical queue's name can be mistaken
    for a priority queue: `DefaultHighQueueUrl` is a logical queue `default-high`,
    `DefaultQueueHighUrl` the high-priority queue of `default` (key `default:high`).
    """

    def logical(camel: str) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "-", camel).lower()

    queues = {}
    priority_queues = {}
    for key, value in outputs.items():
        if "DeadLetter" in key:
            continue
        m = re.fullmatch(r"([A-Z][A-Za-z0-9]*?)QueueUrl", key)
        if m:
            queues[logical(m.group(1))] = value
        m = re.fullmatch(r"([A-Z][A-Za-z0-9]*?)Queue(High|Low)Url", key)
        if m:
            priority_queues[queue_key(logical(m.group(1)), m.group(2).lower())] = value
    if "TasksTableName" not in outputs or "default" not in queues:
        raise ConfigError("the stack has no TasksTableName or DefaultQueueUrl output")
    # A priority queue without its logical queue would be unreachable: leave it out.
    queues.update({k: v for k, v in priority_queues.items() if split_key(k)[0] in queues})
    return settings.with_(
        scheduler_arn=local_function_arn("SchedulerFunction", settings.region),
        tasks_table=outputs["TasksTableName"],
        keys_table=outputs.get("KeysTableName", settings.keys_table),
        queues=queues,
        kms_key_id=outputs.get("TaskDataKeyArn", settings.kms_key_id),
        events_queue_url=outputs.get("EventsOutboxUrl", settings.events_queue_url),
    )
