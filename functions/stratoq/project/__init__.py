"""A user's project: where it is, what it names in its pyproject.toml, which SAM template
the dev stack provisions, and the files `stratoq init` writes (package data here).

Not part of the Lambda artifact (functions/Makefile leaves it out): only the command line
and the dev stack use it. It reads files and nothing else; importing it is cheap.

A project is the nearest directory, from the current one upward, that has a
pyproject.toml. It names its tasks module once there:

    [tool.stratoq]
    tasks = "myapp.tasks"
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path

from stratoq.core.errors import ConfigError

PYPROJECT = "pyproject.toml"
TEMPLATE = "template.yaml"


def project_root(start: Path) -> Path | None:
    """The nearest directory from `start` upward that has a pyproject.toml, if any."""
    here = start.resolve()
    for directory in (here, *here.parents):
        if (directory / PYPROJECT).is_file():
            return directory
    return None


def project_tasks_module(start: Path) -> str | None:
    """`[tool.stratoq] tasks` of the nearest pyproject.toml from `start` upward, if any.

    Only the nearest pyproject.toml counts: a project inside another one (a monorepo)
    is its own project. A file that is not valid TOML, or a `tasks` that is not a
    string of module names, is a ConfigError naming the file.
    """
    root = project_root(start)
    if root is None:
        return None
    path = root / PYPROJECT
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    stratoq = data.get("tool", {}).get("stratoq", {})
    if not isinstance(stratoq, dict):
        raise ConfigError(f"{path}: [tool.stratoq] must be a table")
    tasks = stratoq.get("tasks")
    if tasks is None:
        return None
    if not isinstance(tasks, str) or not tasks.strip():
        raise ConfigError(f'{path}: [tool.stratoq] tasks must be a module name, like "app.tasks"')
    return tasks.strip()


def tasks_module(flag: str | None, start: Path) -> str | None:
    """The tasks module a command runs with, or None for the settings' own.

    `--tasks` wins, then STRATOQ_TASKS_MODULE (None here: Settings reads it), then the
    project's `[tool.stratoq] tasks`; with none of them, Settings' default.
    """
    if flag:
        return flag
    if os.environ.get("STRATOQ_TASKS_MODULE"):
        return None
    return project_tasks_module(start)


def packaged_template() -> Path:
    """The template.yaml shipped inside the package (a copy of the checkout's, made by
    the wheel build; in the checkout itself a symlink to it)."""
    return Path(str(resources.files(__name__).joinpath(TEMPLATE)))


def template_path(start: Path) -> Path:
    """The SAM template the dev stack provisions: STRATOQ_TEMPLATE, else the project's
    template.yaml (beside its pyproject.toml), else the packaged one."""
    named = os.environ.get("STRATOQ_TEMPLATE")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"STRATOQ_TEMPLATE: no template at {path}")
        return path
    root = project_root(start)
    if root is not None and (root / TEMPLATE).is_file():
        return root / TEMPLATE
    path = packaged_template()
    if not path.is_file():
        raise ConfigError(f"the package has no template at {path}; set STRATOQ_TEMPLATE")
    return path
