"""A project names its tasks module once: `[tool.stratoq] tasks` in its pyproject.toml,
found from the nearest pyproject.toml upwards; STRATOQ_TASKS_MODULE overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratoq.core.errors import ConfigError
from stratoq.project import project_tasks_module
from stratoq.testing import default_tasks_module


def project(root: Path, pyproject: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(pyproject)
    return root


def test_a_subdirectory_finds_the_tasks_module_of_its_project(tmp_path: Path) -> None:
    root = project(tmp_path / "shop", '[tool.stratoq]\ntasks = "shop.tasks"\n')
    deeper = root / "tests" / "unit"
    deeper.mkdir(parents=True)
    assert project_tasks_module(root) == "shop.tasks"
    assert project_tasks_module(deeper) == "shop.tasks"


def test_the_nearest_pyproject_decides_even_without_an_entry(tmp_path: Path) -> None:
    outer = project(tmp_path / "mono", '[tool.stratoq]\ntasks = "mono.tasks"\n')
    inner = project(outer / "lib", '[project]\nname = "lib"\n')
    assert project_tasks_module(inner) is None


def test_no_pyproject_is_no_module(tmp_path: Path) -> None:
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    if any((p / "pyproject.toml").is_file() for p in (here, *here.parents)):
        pytest.skip("a pyproject.toml above the temporary directory")
    assert project_tasks_module(here) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[tool.stratoq\n", "not valid TOML"),
        ('[tool]\nstratoq = "x"\n', "[tool.stratoq] must be a table"),
        ("[tool.stratoq]\ntasks = 3\n", "tasks must be a module name"),
        ('[tool.stratoq]\ntasks = " "\n', "tasks must be a module name"),
    ],
)
def test_a_malformed_entry_is_a_sentence_naming_the_file(
    tmp_path: Path, text: str, says: str
) -> None:
    root = project(tmp_path / "p", text)
    with pytest.raises(ConfigError) as err:
        project_tasks_module(root)
    assert says in str(err.value)
    assert str(root / "pyproject.toml") in str(err.value)


def test_the_environment_overrides_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "shop", '[tool.stratoq]\ntasks = "shop.tasks"\n')
    monkeypatch.delenv("STRATOQ_TASKS_MODULE", raising=False)
    assert default_tasks_module(root) == "shop.tasks"
    monkeypatch.setenv("STRATOQ_TASKS_MODULE", "other.tasks")
    assert default_tasks_module(root) == "other.tasks"


def test_no_module_anywhere_says_where_to_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "bare", '[project]\nname = "bare"\n')
    monkeypatch.delenv("STRATOQ_TASKS_MODULE", raising=False)
    with pytest.raises(ConfigError, match=r"\[tool.stratoq\] tasks") as err:
        default_tasks_module(root)
    assert "stratoq_tasks_module" in str(err.value)
