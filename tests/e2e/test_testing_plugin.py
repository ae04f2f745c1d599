"""stratoq.testing as a project uses it: a small project of its own (a tasks module, its
pyproject.toml naming it, tests using the fixtures), its test suite run by pytest in a
child process that finds the plugin as an installed stratoq offers it (the `pytest11`
entry point of pyproject.toml). The suite passes with the project's tasks, fails with
broken ones, and its session stack leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT

TASKS = """
import time

import stratoq
from stratoq import Fail, Retry, task


@task("add")
def add(payload):
    return payload["a"] + payload["b"]


@task("flaky")
def flaky(payload):
    if stratoq.context().attempt < 3:
        raise RuntimeError(f"flaked on attempt {stratoq.context().attempt}")
    return "steady"


@task("broken")
def broken(payload):
    raise RuntimeError("always")


@task("refuse")
def refuse(payload):
    raise Fail("bad input")


@task("slow")
def slow(payload):
    time.sleep(30)


@task("later")
def later(payload):
    # An hour's backoff: eager mode does not wait for it.
    if stratoq.context().attempt == 1:
        raise Retry(3600)
    return stratoq.context().attempt


@task("parent")
def parent(payload):
    # A task function enqueues through the active client: here, eager mode's.
    return add.enqueue({"a": 1, "b": 1}).id
"""

# The same names, wrongly implemented: the project's tests must catch it.
BROKEN_TASKS = """
from stratoq import task


@task("add")
def add(payload):
    return payload["a"] - payload["b"]


@task("flaky")
def flaky(payload):
    raise RuntimeError("worse")
"""

TEST_EAGER = """
import pytest

from stratoq.core.errors import UnknownTaskNameError


def test_add(stratoq_eager):
    task = stratoq_eager.enqueue("add", {"a": 2, "b": 3})
    assert task.status == "succeeded"
    assert task.result == 5
    assert stratoq_eager.get(task.id).result == 5


def test_flaky_task_succeeds_on_its_third_attempt(stratoq_eager):
    task = stratoq_eager.enqueue("flaky", max_attempts=5)
    assert (task.status, task.attempts, task.result) == ("succeeded", 3, "steady")
    assert [e.message for e in task.errors] == [
        "RuntimeError: flaked on attempt 1",
        "RuntimeError: flaked on attempt 2",
    ]


def test_exhausted_retries_fail_with_every_error(stratoq_eager):
    task = stratoq_eager.enqueue("broken", max_attempts=3)
    assert (task.status, task.attempts) == ("failed", 3)
    assert [(e.attempt, e.message) for e in task.errors] == [
        (n, "RuntimeError: always") for n in (1, 2, 3)
    ]


def test_fail_ends_at_once(stratoq_eager):
    task = stratoq_eager.enqueue("refuse", max_attempts=5)
    assert (task.status, task.attempts) == ("failed", 1)
    assert [(e.kind, e.message) for e in task.errors] == [("fail", "bad input")]


def test_timeout_is_enforced(stratoq_eager):
    task = stratoq_eager.enqueue("slow", timeout_seconds=1, max_attempts=1)
    assert task.status == "failed"
    assert [e.kind for e in task.errors] == ["timeout"]


def test_backoff_is_not_waited_for(stratoq_eager):
    task = stratoq_eager.wait(stratoq_eager.enqueue("later").id, timeout=5)
    assert (task.status, task.result) == ("succeeded", 2)


def test_task_functions_enqueue_into_eager_mode(stratoq_eager):
    from shop.tasks import add, flaky

    assert add.enqueue({"a": 1, "b": 2}).result(timeout=5) == 3
    handle = flaky.with_options(max_attempts=5).enqueue()
    assert handle.result(timeout=5) == "steady"
    assert handle.get().attempts == 3


def test_a_task_enqueued_by_a_task_runs_too(stratoq_eager):
    child = stratoq_eager.enqueue("parent").result
    assert stratoq_eager.get(child).result == 2
    assert len(stratoq_eager.list(status="succeeded")) == 2


def test_every_test_starts_empty(stratoq_eager):
    assert stratoq_eager.list() == []


def test_unknown_name_fails_clearly(stratoq_eager):
    with pytest.raises(UnknownTaskNameError, match="no task named 'ad'"):
        stratoq_eager.enqueue("ad")
"""

TEST_STACK = """
import os
from pathlib import Path


def test_the_stack_runs_the_projects_tasks(stratoq_stack, tmp_path_factory):
    task = stratoq_stack.enqueue("add", {"a": 20, "b": 22})
    assert stratoq_stack.wait(task.id, timeout=60).result == 42
    # For the outer test: the stack's process group, to check nothing outlives the run.
    base = str(tmp_path_factory.getbasetemp())
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "dev" in cmdline and base in cmdline:
            Path(os.environ["STACK_PGID_FILE"]).write_text(str(os.getpgid(int(proc.name))))
"""


@pytest.fixture(scope="module")
def entry_points(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that, on sys.path, gives pytest the pytest11 entry points that
    pyproject.toml declares, as installing stratoq does (without a wheel and a venv)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    site = tmp_path_factory.mktemp("site")
    info = site / "stratoq_plugin_probe-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: stratoq-plugin-probe\nVersion: 0\n"
    )
    lines = [f"{name} = {target}" for name, target in declared["pytest11"].items()]
    (info / "entry_points.txt").write_text("[pytest11]\n" + "\n".join(lines) + "\n")
    return site


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: package `shop` with its tasks, named in its pyproject.toml."""
    root = tmp_path_factory.mktemp("userproject")
    (root / "pyproject.toml").write_text(
        textwrap.dedent("""
            [project]
            name = "shop"
            version = "0.1.0"

            [tool.stratoq]
            tasks = "shop.tasks"

            [tool.pytest.ini_options]
            testpaths = ["tests"]
        """)
    )
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "tasks.py").write_text(TASKS)
    (root / "shop" / "broken_tasks.py").write_text(BROKEN_TASKS)
    (root / "tests").mkdir()
    (root / "tests" / "test_eager.py").write_text(TEST_EAGER)
    (root / "tests" / "test_stack.py").write_text(TEST_STACK)
    return root


def run_suite(
    project: Path, site: Path, tmp: Path, *args: str, first: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m pytest` in `project`, with stratoq and its entry points (`site`), and
    `first` ahead of everything on the path."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STRATOQ_", "PYTEST_"))}
    path = [str(ROOT / "functions"), str(site), str(project)]
    clean["PYTHONPATH"] = os.pathsep.join([str(first), *path] if first else path)
    clean.update(env)
    return subprocess.run(
        [
            *(PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(f"--basetemp={tmp / 'basetemp'}", *args),
        ],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_projects_suite_passes_with_eager_mode_and_the_session_stack(
    project: Path, entry_points: Path, tmp_path: Path
) -> None:
    pgid_file = tmp_path / "stack.pgid"
    out = run_suite(project, entry_points, tmp_path, STACK_PGID_FILE=str(pgid_file))
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    assert "11 passed" in out.stdout
    # The stack and every process of its session are gone with the test run.
    pgid = int(pgid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, signal.SIGCONT)


def test_the_projects_suite_fails_when_a_task_is_broken(
    project: Path, entry_points: Path, tmp_path: Path
) -> None:
    # STRATOQ_TASKS_MODULE overrides the pyproject.toml's module, as for `stratoq worker`.
    out = run_suite(
        project,
        entry_points,
        tmp_path,
        "tests/test_eager.py",
        STRATOQ_TASKS_MODULE="shop.broken_tasks",
    )
    assert out.returncode == 1, out.stdout[-5000:]
    assert "FAILED tests/test_eager.py::test_add" in out.stdout
    assert "assert -1 == 5" in out.stdout
    assert "FAILED tests/test_eager.py::test_flaky_task_succeeds_on_its_third_attempt" in out.stdout
    # Only the tasks are broken: the fixture itself still works.
    assert "tests/test_eager.py::test_every_test_starts_empty" not in out.stdout


def test_set_up_problems_are_sentences_not_tracebacks(entry_points: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    (bare / "extra").mkdir(parents=True)
    (bare / "pyproject.toml").write_text('[project]\nname = "bare"\n')
    (bare / "test_module.py").write_text("def test_it(stratoq_eager):\n    pass\n")
    # Here a module is named, but the `local` extra is missing: moto cannot be imported.
    (bare / "extra" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.fixture(scope='session')\n"
        "def stratoq_tasks_module():\n    return 'json'\n"
    )
    (bare / "extra" / "test_extra.py").write_text("def test_it(stratoq_eager):\n    pass\n")
    no_moto = tmp_path / "no_moto"
    (no_moto / "moto").mkdir(parents=True)
    (no_moto / "moto" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'moto'\", name='moto')\n"
    )
    out = run_suite(bare, entry_points, tmp_path, "-rE", first=no_moto)
    assert out.returncode == 1, out.stdout[-5000:]
    assert "2 errors" in out.stdout
    assert "no tasks module for stratoq's test fixtures" in out.stdout
    assert "pip install 'stratoq[local]'" in out.stdout
    assert "Traceback" not in out.stdout
    assert "During handling" not in out.stdout
