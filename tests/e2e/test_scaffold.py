"""A project of one's own, as a user makes it: `pip install 'stratoq[local]'` (the wheel,
in a fresh venv: the session's `local_venv`), `stratoq init demo`, then the project's own
commands: `make test` (red when a task breaks), its template.yaml (translated
offline and linted: the functions get the project's code and tasks module) and its Lambda
build (the Makefile's recipe for the host's platform, the handler imported from the
built directory).

`make run` in a project (its tasks over HTTP and the CLI, the API applying the tasks'
options and payload models) and `sam build` for arm64 run in tests/e2e/test_tutorial.py,
which follows docs/tutorial.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.support.artifacts import run as run_tool
from tests.support.artifacts import tool
from tests.support.install import user_env

pytestmark = pytest.mark.timeout(300)

NAME = "demo"


def sh(venv: Path, cwd: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command in the user's shell: the venv's bin first on PATH."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=user_env(venv) | env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def project(local_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`stratoq init demo` in an empty directory."""
    where = tmp_path_factory.mktemp("projects")
    out = sh(local_venv, where, "stratoq", "init", NAME)
    assert out.returncode == 0, out.stderr
    assert f"Created {NAME}/" in out.stdout
    return where / NAME


def test_make_test_fails_when_a_task_breaks(
    local_venv: Path, project: Path, tmp_path: Path
) -> None:
    # Green as made (4 passed: two plain calls, two through stratoq_eager) is the
    # tutorial's first `make test` (tests/e2e/test_tutorial.py); here, the same tests
    # catch a broken task, in a plain call and run as a task.
    broken = shutil.copytree(project, tmp_path / NAME)
    tasks = broken / NAME / "tasks.py"
    text = tasks.read_text()
    assert text.count("numbers.a + numbers.b") == 1
    tasks.write_text(text.replace("numbers.a + numbers.b", "numbers.a - numbers.b"))
    red = sh(local_venv, broken, "make", "test")
    assert red.returncode != 0
    assert "FAILED tests/test_tasks.py::test_add_adds" in red.stdout
    assert "FAILED tests/test_tasks.py::test_add_runs_as_a_task" in red.stdout


def test_the_template_deploys_the_projects_code_and_tasks_module(project: Path) -> None:
    from samtranslator.yaml_helper import yaml_parse

    from stratoq.local.provision import translate

    sam = yaml_parse((project / "template.yaml").read_text())
    # SAM builds each function from CodeUri (the project) with the project's Makefile.
    assert (project / sam["Globals"]["Function"]["CodeUri"]).resolve() == project.resolve()
    functions = {
        k: v for k, v in sam["Resources"].items() if v["Type"] == "AWS::Serverless::Function"
    }
    for name, function in functions.items():
        assert "CodeUri" not in function["Properties"], name
        assert function["Metadata"]["BuildMethod"] == "makefile", name
        # `sam build` runs make build-<LogicalId>: the Makefile has it (a dry run).
        dry = run_tool("make", "-n", f"build-{name}", "ARTIFACTS_DIR=/nowhere", cwd=project)
        assert dry.returncode == 0, f"{name}: {dry.stderr}"
    cfn = translate(project / "template.yaml")
    assert cfn["Parameters"]["TasksModule"]["Default"] == f"{NAME}.tasks"
    worker = cfn["Resources"]["WorkerFunction"]["Properties"]
    assert worker["Environment"]["Variables"]["STRATOQ_TASKS_MODULE"] == {"Ref": "TasksModule"}
    for name in functions:
        variables = cfn["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert variables["STRATOQ_TASKS_MODULE"] == {"Ref": "TasksModule"}, name
    lint = tool("cfn-lint")
    if lint is None:
        pytest.skip("cfn-lint is not installed (dev extras)")
    linted = run_tool(lint, project / "template.yaml")
    assert linted.returncode == 0, linted.stdout + linted.stderr


PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import stratoq.handlers.worker
from stratoq.core import registry
registry.load(os.environ["STRATOQ_TASKS_MODULE"])
print(json.dumps({
    "names": registry.names(),
    "greeting": registry.get("demo.greet")({"name": "Ada"}),
    "stratoq": stratoq.__file__,
}))
"""


def test_the_lambda_build_has_the_project_and_stratoq_without_dev_packages(
    local_venv: Path, project: Path, stratoq_wheel: Path, tmp_path: Path
) -> None:
    code = tmp_path / "WorkerFunction"
    # The recipe `sam build` runs, for the host's Python (LAMBDA_PLATFORM= empty); stratoq
    # from the session's wheel, as a user without an index that has it would.
    built = sh(
        local_venv,
        project,
        "make",
        "build-WorkerFunction",
        f"ARTIFACTS_DIR={code}",
        "LAMBDA_PLATFORM=",
        f"PYTHON={PYTHON}",
        PIP_FIND_LINKS=str(stratoq_wheel.parent),
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    for absent in ("stratoq/local", "stratoq/project", "moto", "samtranslator", "yaml", "bin"):
        assert not (code / absent).exists(), absent
    assert (code / NAME / "tasks.py").is_file()
    out = subprocess.run(
        [PYTHON, "-I", "-S", "-c", PROBE, str(code)],
        cwd=code,
        env={"AWS_DEFAULT_REGION": "us-east-1", "STRATOQ_TASKS_MODULE": f"{NAME}.tasks"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout)
    assert {f"{NAME}.add", f"{NAME}.greet"} <= set(seen["names"])
    assert seen["greeting"] == "Hello, Ada!"
    assert Path(seen["stratoq"]).is_relative_to(code)
