"""A user's project (stratoq.project): the tasks module its pyproject.toml names and which
wins over it, the template the dev stack provisions, and `stratoq init` (its refusals,
its files, the template derived from the packaged one)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stratoq.cli import main as cli
from stratoq.core.errors import ConfigError
from stratoq.project import project_tasks_module, tasks_module, template_path
from stratoq.project.scaffold import files
from tests.support.artifacts import ROOT, TEMPLATE, run, tool


def pyproject(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(body)
    return directory


def test_the_nearest_pyproject_names_the_tasks_module(tmp_path: Path) -> None:
    outer = pyproject(tmp_path, '[tool.stratoq]\ntasks = "outer.tasks"\n')
    inner = pyproject(outer / "inner", '[project]\nname = "inner"\n')
    deep = outer / "app" / "sub"
    deep.mkdir(parents=True)
    assert project_tasks_module(deep) == "outer.tasks"
    # The nearest pyproject.toml is the project, even when it names no tasks module.
    assert project_tasks_module(inner) is None
    assert project_tasks_module(Path("/")) is None


@pytest.mark.parametrize(
    ("body", "says"),
    [("[tool.stratoq\n", "not valid TOML"), ("[tool.stratoq]\ntasks = 3\n", "module name")],
)
def test_a_wrong_pyproject_is_a_sentence_naming_it(tmp_path: Path, body: str, says: str) -> None:
    pyproject(tmp_path, body)
    with pytest.raises(ConfigError, match=says) as raised:
        project_tasks_module(tmp_path)
    assert str(tmp_path / "pyproject.toml") in str(raised.value)


def test_flag_then_environment_then_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject(tmp_path, '[tool.stratoq]\ntasks = "mine.tasks"\n')
    monkeypatch.delenv("STRATOQ_TASKS_MODULE", raising=False)
    assert tasks_module(None, tmp_path) == "mine.tasks"
    assert tasks_module("flag.tasks", tmp_path) == "flag.tasks"
    monkeypatch.setenv("STRATOQ_TASKS_MODULE", "env.tasks")
    assert tasks_module(None, tmp_path) is None  # Settings.from_env reads the variable
    assert tasks_module("flag.tasks", tmp_path) == "flag.tasks"


def test_template_environment_then_project_then_packaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRATOQ_TEMPLATE", raising=False)
    packaged = template_path(tmp_path)  # no project here
    assert packaged.read_text() == TEMPLATE.read_text()
    project = pyproject(tmp_path / "p", "")
    assert template_path(project) == packaged  # a project without a template.yaml
    (project / "template.yaml").write_text("ours")
    (project / "src").mkdir()
    assert template_path(project / "src") == project / "template.yaml"
    monkeypatch.setenv("STRATOQ_TEMPLATE", str(tmp_path / "named.yaml"))
    with pytest.raises(ConfigError, match="STRATOQ_TEMPLATE"):
        template_path(project)
    (tmp_path / "named.yaml").write_text("named")
    assert template_path(project) == tmp_path / "named.yaml"


def test_the_cli_imports_the_projects_modules_from_a_subdirectory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = pyproject(tmp_path / "p", "")
    (project / "src").mkdir()
    monkeypatch.chdir(project / "src")
    monkeypatch.setattr(sys, "path", ["/lib"])
    cli.project_importable()
    assert sys.path == ["/lib", str(project / "src"), str(project)]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("My-App", "not a valid Python package name"),
        ("1st", "not a valid Python package name"),
        ("class", "not a valid Python package name"),
        ("json", "already a module's name"),
        ("stratoq", "already a module's name"),
    ],
)
def test_init_refuses_a_name_that_is_no_package(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(["init", name])
    assert exited.value.code == 2
    [sentence] = capsys.readouterr().err.splitlines()
    assert sentence.startswith(f"stratoq: {name!r} ") and says in sentence
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_a_directory_with_files_and_fills_an_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shop").mkdir()
    assert cli.main(["init", "shop"]) == 0
    assert "Created shop/ with 9 files" in capsys.readouterr().out
    assert (tmp_path / "shop" / "shop" / "tasks.py").is_file()
    with pytest.raises(SystemExit) as exited:
        cli.main(["init", "shop"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "stratoq: shop already exists and is not an empty directory\n"
    )


def test_the_scaffold_is_complete_and_names_its_package_everywhere() -> None:
    made = files("shop")
    assert set(made) == {
        ".gitignore",
        "Dockerfile",
        "Makefile",
        "README.md",
        "pyproject.toml",
        "shop/__init__.py",
        "shop/tasks.py",
        "template.yaml",
        "tests/test_tasks.py",
    }
    for path, text in made.items():
        assert "{{" not in text and "_name_" not in text, path
    import tomllib

    meta = tomllib.loads(made["pyproject.toml"])
    assert meta["tool"]["stratoq"]["tasks"] == "shop.tasks"
    assert any(d.startswith("stratoq>=") for d in meta["project"]["dependencies"])
    assert any(
        d.startswith("stratoq[local]") for d in meta["project"]["optional-dependencies"]["dev"]
    )
    assert '@task("shop.add", ' in made["shop/tasks.py"]
    assert "STRATOQ_TASKS_MODULE=shop.tasks" in made["Dockerfile"]


def test_the_projects_readme_says_how_to_get_the_first_key_after_deploying() -> None:
    readme = files("shop")["README.md"]
    deploy = readme[readme.index("## Deploy") :]
    # The stack `make deploy` creates is named after the project.
    assert "stratoq keys bootstrap --stack shop --region REGION" in deploy
    assert "scripts/bootstrap-key" not in readme  # no checkout of stratoq here


def test_the_projects_template_is_the_packaged_one_with_its_code_and_module() -> None:
    from samtranslator.yaml_helper import yaml_parse

    ours = yaml_parse(TEMPLATE.read_text())
    theirs = yaml_parse(files("shop")["template.yaml"])
    assert theirs["Globals"]["Function"]["CodeUri"] == "."
    assert theirs["Parameters"]["TasksModule"]["Default"] == "shop.tasks"
    # Nothing else differs: a new stratoq's template makes a new project's template.
    theirs["Globals"]["Function"]["CodeUri"] = ours["Globals"]["Function"]["CodeUri"]
    theirs["Parameters"]["TasksModule"]["Default"] = ours["Parameters"]["TasksModule"]["Default"]
    assert theirs == ours


def test_the_projects_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev extras)")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(files("shop")["Dockerfile"])
    out = run(hadolint, dockerfile, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
