"""The files of a new project (`stratoq init NAME`): string templates shipped as package
data in files/, where `{{name}}` and `{{version}}` stand for the project's name and
stratoq's version and a path part `_name_` for the package directory; plus a
template.yaml derived from the packaged one.
"""

from __future__ import annotations

import keyword
import re
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from stratoq.core.errors import ConfigError, UsageError
from stratoq.core.version import __version__
from stratoq.project import packaged_template

FILES = "files"
SUFFIX = ".tmpl"
# Dotfiles are shipped without their dot (package-data globs skip hidden files).
RENAMED = {"gitignore": ".gitignore"}
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

# What the packaged template says that a project's template says differently: the
# functions' code (the project, built by its own Makefile) and their tasks module.
_CODE_URI = "    CodeUri: functions/\n"
_TASKS_DEFAULT = "  TasksModule:\n    Type: String\n    Default: stratoq.examples\n"


def check_name(name: str) -> None:
    """Refuse (UsageError, saying why) a NAME that cannot be the project's package."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UsageError(
            f"{name!r} is not a valid Python package name: use lower-case letters, digits "
            "and underscores, starting with a letter (e.g. my_tasks)"
        )
    if name in sys.stdlib_module_names or name in {"stratoq", "tests", "test"}:
        raise UsageError(
            f"{name!r} is already a module's name (Python's standard library, stratoq or "
            "the tests), which the project's package would hide or be hidden by; choose "
            "another name"
        )


def project_template(name: str) -> str:
    """The packaged template.yaml as a project's: CodeUri is the project (built by its
    Makefile) and the TasksModule parameter defaults to NAME.tasks."""
    text = packaged_template().read_text()
    for anchor in (_CODE_URI, _TASKS_DEFAULT):
        if text.count(anchor) != 1:
            raise ConfigError(f"the packaged template.yaml has no single {anchor.strip()!r}")
    text = text.replace(_CODE_URI, "    CodeUri: .\n")
    text = text.replace(_TASKS_DEFAULT, _TASKS_DEFAULT.replace("stratoq.examples", f"{name}.tasks"))
    # Its comments name the build's Makefile by its place in stratoq's checkout.
    text = text.replace("functions/Makefile", "Makefile")
    header = (
        f"# {name}'s stack: stratoq {__version__}'s template.yaml (made by `stratoq init`)\n"
        f"# with the functions' code from this project (CodeUri, built by the Makefile)\n"
        f"# and its tasks module ({name}.tasks, the TasksModule parameter).\n"
    )
    return header + text


def _render(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(value, text)


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        path = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                found.extend(_walk(child, path + "/"))
        elif child.name.endswith(SUFFIX):
            found.append((path, child))
    return found


def files(name: str) -> dict[str, str]:
    """The new project's files, by path relative to its directory."""
    values = {"name": name, "version": __version__}
    out: dict[str, str] = {}
    for path, source in _walk(resources.files(__package__ or "stratoq.project") / FILES):
        parts = [RENAMED.get(p, p) for p in path.removesuffix(SUFFIX).split("/")]
        target = "/".join(name if p == "_name_" else p for p in parts)
        out[target] = _render(source.read_text(), values)
    out["template.yaml"] = project_template(name)
    return out


def create(directory: Path, name: str) -> list[str]:
    """Write the project NAME into `directory` (missing or empty); the paths written."""
    check_name(name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory} already exists and is not an empty directory")
    written = files(name)
    for path, text in written.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return sorted(written)
