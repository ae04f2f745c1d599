"""The Lambda artifact as `sam build` makes it (functions/Makefile, BuildMethod makefile):
the real SAM CLI, offline apart from PyPI, no Docker and no python3.12 needed.

Two builds of the five functions: the one that is deployed (python3.12 wheels for arm64),
checked file by file, and the same Makefile recipe with LAMBDA_PLATFORM= (empty), which
installs the same dependencies as wheels for the Python running the tests. The arm64
wheels of compiled dependencies (pydantic_core, cryptography) cannot load on another
machine, so the import check runs on the second build: same files, same exclusions, only
the platform of the wheels differs. Each handler module then imports in a fresh
interpreter whose sys.path is the standard library and that function's directory alone.

Skipped only when the SAM CLI is missing (`make validate` installs it in .venv/sam).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON, ROOT

pytestmark = pytest.mark.timeout(900)

FUNCTIONS = (
    "ApiFunction",
    "AuthorizerFunction",
    "IngestFunction",
    "SchedulerFunction",
    "WorkerFunction",
)


def sam_cli() -> str | None:
    venv_sam = ROOT / ".venv" / "sam" / "bin" / "sam"
    return str(venv_sam) if venv_sam.is_file() else shutil.which("sam")


def sam_build(build_dir: Path, **make_vars: str) -> Path:
    """`sam build` of template.yaml into build_dir; make_vars reach the Makefile."""
    sam = sam_cli()
    if sam is None:
        pytest.skip("the SAM CLI is not installed (make validate installs it in .venv/sam)")
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    env |= {"PYTHON": PYTHON, **make_vars}
    out = subprocess.run(
        [
            sam,
            "build",
            "--template-file",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(build_dir),
        ],
        cwd=build_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return build_dir


@pytest.fixture(scope="module")
def arm64_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sam_build(tmp_path_factory.mktemp("arm64") / "build")


@pytest.fixture(scope="module")
def host_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sam_build(tmp_path_factory.mktemp("host") / "build", LAMBDA_PLATFORM="")


def handlers() -> dict[str, str]:
    from samtranslator.yaml_helper import yaml_parse

    resources = yaml_parse((ROOT / "template.yaml").read_text())["Resources"]
    return {name: resources[name]["Properties"]["Handler"] for name in FUNCTIONS}


def test_sam_build_packages_the_dependencies_for_arm64(arm64_build: Path) -> None:
    for function in FUNCTIONS:
        code = arm64_build / function
        assert (code / "stratoq" / "handlers" / "worker.py").is_file()
        for package in ("pydantic", "aws_lambda_powertools", "prometheus_client"):
            assert (code / package).is_dir(), f"{function} lacks {package}"
        # arm64 functions get aarch64 wheels, whatever machine builds them.
        [core] = (code / "pydantic_core").glob("_pydantic_core.*.so")
        assert "aarch64" in core.name


def test_the_artifact_has_the_handlers_and_no_dev_stack(arm64_build: Path) -> None:
    package = sorted((ROOT / "functions" / "stratoq").rglob("*.py"))
    for function, handler in handlers().items():
        code = arm64_build / function
        module = handler.rsplit(".", 1)[0]
        assert (code / (module.replace(".", "/") + ".py")).is_file(), function
        # Nor the dev-only packages: the dev stack, the packaged template and scaffold, the
        # test fixtures.
        for dev_only in ("local", "project", "testing"):
            assert not (code / "stratoq" / dev_only).exists(), f"{function} ships {dev_only}"
        # Not moto, nor the rest of the dev stack's dependencies (the `local` extra).
        for absent in ("moto", "samtranslator", "yaml", "werkzeug", "flask"):
            assert not (code / absent).exists(), f"{function} ships {absent}"
        assert not list(code.rglob("__pycache__")), function
        assert not (code / "bin").exists(), function
        # Everything else of the package is there, as it is in the source.
        shipped = {p.relative_to(code / "stratoq") for p in (code / "stratoq").rglob("*.py")}
        expected = {
            p.relative_to(ROOT / "functions" / "stratoq")
            for p in package
            if p.relative_to(ROOT / "functions" / "stratoq").parts[0]
            not in {"local", "project", "testing"}
        }
        assert shipped == expected, function


PROBE = """
import importlib, importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
module = importlib.import_module(sys.argv[2])
import stratoq
print(json.dumps({
    "handler": callable(getattr(module, "lambda_handler", None)),
    "stratoq": stratoq.__file__,
    "path": sys.path,
    "local": sorted(
        m for m in sys.modules if m.startswith(("stratoq.local", "stratoq.testing"))
    ),
    "moto": importlib.util.find_spec("moto") is not None,
}))
"""


def test_each_handler_imports_from_its_built_directory_alone(host_build: Path) -> None:
    base = json.loads(
        subprocess.run(
            [PYTHON, "-I", "-S", "-c", "import json, sys; print(json.dumps(sys.path))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    for function, handler in handlers().items():
        code = host_build / function
        module = handler.rsplit(".", 1)[0]
        # -I -S: no site-packages (this venv has moto and the checkout), no PYTHONPATH.
        out = subprocess.run(
            [PYTHON, "-I", "-S", "-c", PROBE, str(code), module],
            cwd=code,
            env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, f"{function}: {out.stderr[-3000:]}"
        seen: dict[str, Any] = json.loads(out.stdout)
        assert seen["handler"], function
        assert seen["path"] == [str(code), *base], function
        assert Path(seen["stratoq"]).is_relative_to(code), function
        assert seen["local"] == [], function
        assert not seen["moto"], function
