"""What a project says about itself in its pyproject.toml: `[tool.stratoq] tasks`.

A team names its tasks module once, in its pyproject.toml:

    [tool.stratoq]
    tasks = "myproject.tasks"

and everything run inside the project (its workers, its dev stack, its tests) finds it
there, from the nearest pyproject.toml upwards, as pip and pytest find theirs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from stratoq.core.errors import ConfigError

PYPROJECT = "pyproject.toml"


def find_pyproject(start: Path) -> Path | None:
    """The first pyproject.toml in `start` (a directory) or one of its parents, or None."""
    here = start.absolute()
    for directory in (here, *here.parents):
        candidate = directory / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def project_tasks_module(start: Path) -> str | None:
    """`[tool.stratoq] tasks` of the nearest pyproject.toml from `start` upwards.

    None when there is no pyproject.toml, or the nearest one has no such entry (a
    pyproject.toml further up belongs to another project, so it is not consulted).
    A malformed file or entry is a ConfigError naming the file.
    """
    path = find_pyproject(start)
    if path is None:
        return None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    section = data.get("tool", {}).get("stratoq", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.stratoq] must be a table")
    tasks = section.get("tasks")
    if tasks is None:
        return None
    if not isinstance(tasks, str) or not tasks.strip():
        raise ConfigError(
            f'{path}: [tool.stratoq] tasks must name a module, e.g. tasks = "myproject.tasks"'
        )
    return tasks.strip()
