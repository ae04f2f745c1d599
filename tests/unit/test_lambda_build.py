"""The Lambda artifact's build wiring, offline: every function of template.yaml builds
with functions/Makefile, which ships the package without its dev stack (stratoq/local)
and its test fixtures (stratoq/testing).
tests/e2e/test_lambda_artifact.py runs the real `sam build`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "functions" / "Makefile"


def functions() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_builds_with_the_makefile_next_to_its_code() -> None:
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text())
    global_uri = template["Globals"]["Function"]["CodeUri"]
    assert functions()
    for name, resource in functions().items():
        assert resource.get("Metadata", {}).get("BuildMethod") == "makefile", name
        # SAM looks for the Makefile at the root of the function's CodeUri.
        code_uri = resource["Properties"].get("CodeUri", global_uri)
        assert (ROOT / code_uri / "Makefile").resolve() == MAKEFILE, name


@pytest.mark.parametrize("name", sorted(functions()))
def test_makefile_target_copies_the_package_without_the_dev_stack(
    name: str, tmp_path: Path
) -> None:
    out = subprocess.run(
        ["make", "-n", "-f", str(MAKEFILE), f"build-{name}", f"ARTIFACTS_DIR={tmp_path}"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "--exclude=stratoq/local" in out.stdout
    assert "--exclude=stratoq/testing" in out.stdout
    # The functions' runtime: python3.12 on arm64 (template.yaml Globals).
    assert "--platform manylinux2014_aarch64" in out.stdout
    assert "--python-version 3.12" in out.stdout
    assert "--only-binary=:all:" in out.stdout


def test_template_runtime_is_the_one_the_makefile_targets() -> None:
    from samtranslator.yaml_helper import yaml_parse

    globals_ = yaml_parse((ROOT / "template.yaml").read_text())["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.12"
    assert globals_["Architectures"] == ["arm64"]
    for name, resource in functions().items():
        assert "Runtime" not in resource["Properties"], name
        assert "Architectures" not in resource["Properties"], name
