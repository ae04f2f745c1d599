"""Where the SDK and the CLI find the dev stack: the `.stratoq/dev.json` that `stratoq dev`
writes (its URLs, admin key and CA file).

Looked for as git looks for `.git`: in the current directory, then in each parent up to
the filesystem root, the first one found wins; so every directory of a project reaches
the stack started at its top. STRATOQ_DEV_FILE names the file instead (no search).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from stratoq.core.errors import ConfigError

DEV_FILE = Path(".stratoq") / "dev.json"
ENV = "STRATOQ_DEV_FILE"

# The facts that name files; a relative one is relative to dev.json's own directory
# (`stratoq dev` writes absolute paths, a hand-written file may not).
_PATHS = ("ca_bundle",)


@dataclass(frozen=True)
class DevFile:
    """What was found, and where it was looked for (for the error when nothing was)."""

    facts: dict[str, str] = field(default_factory=dict)
    path: Path | None = None  # the file read; None when there was none
    looked: str = ""  # where it was looked for, as the error says it
    problem: str = ""  # why a file that exists gave nothing

    def no_api(self) -> ConfigError:
        """The error for a client that has no URL or key from anywhere."""
        where = self.problem or f"looked for {self.looked}"
        return ConfigError(
            "no API configured: set STRATOQ_API_URL and STRATOQ_API_KEY, pass the URL and "
            "key (--api-url/--api-key, or Client(api_url, api_key)), or start `stratoq dev`; "
            + where
        )


def find(start: Path | None = None) -> Path | None:
    """The first `.stratoq/dev.json` in `start` (default: the current directory) or a
    parent of it, or None."""
    here = (start or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        candidate = directory / DEV_FILE
        if candidate.is_file():
            return candidate
    return None


def load(path: Path | None = None, start: Path | None = None) -> DevFile:
    """The facts of `path`; else of STRATOQ_DEV_FILE; else of the first dev.json found
    from `start` upwards. Nothing found or unreadable gives empty facts saying why."""
    if path is None and os.environ.get(ENV):
        path = Path(os.environ[ENV])
        looked = f"{path} (named by {ENV})"
    elif path is not None:
        looked = str(path)
    if path is not None:
        if not path.is_file():
            return DevFile(looked=looked)
    else:
        here = (start or Path.cwd()).absolute()
        looked = f"{DEV_FILE} in {here} and its parents"
        path = find(here)
        if path is None:
            return DevFile(looked=looked)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return DevFile(path=path, looked=looked, problem=f"cannot read {path}: {exc}")
    if not isinstance(data, dict):
        return DevFile(path=path, looked=looked, problem=f"{path} is not a JSON object")
    facts = {k: str(v) for k, v in data.items()}
    for name in _PATHS:
        if facts.get(name):
            facts[name] = str(path.parent / facts[name])  # an absolute one stays as it is
    missing = " or ".join(k for k in ("api_url", "api_key") if not facts.get(k))
    return DevFile(facts, path, looked, f"{path} has no {missing}" if missing else "")
