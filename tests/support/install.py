"""The stratoq wheel and fresh venvs with it installed, made once per test session and
shared by the xdist workers (a file lock: the first worker builds, the others wait and
reuse it).

The wheel is built from a copy of the sources (the checkout stays clean) and installed
with the test run's own uv (or pip) into venvs that have no pip (`--without-pip` saves the
seconds of ensurepip); the dependencies come from the index, through the installer's cache
after the first run.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.support.artifacts import copy_source

PIP = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--quiet"]
# uv (make installs it beside the test run's python) installs the same wheel with the same
# metadata in a fraction of pip's time; without it, pip does.
UV = Path(PYTHON).parent / "uv"
READY = ".ready"


def session_dir(factory: pytest.TempPathFactory) -> Path:
    """A directory all xdist workers of this session share (the basetemp's parent under
    xdist, the basetemp itself otherwise)."""
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "stratoq-install"
    path.mkdir(exist_ok=True)
    return path


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.with_suffix(".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str | Path], timeout: float) -> None:
    out = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, f"{argv}: {out.stderr[-3000:]}"


def wheel(shared: Path) -> Path:
    """The stratoq wheel, built once."""
    dist = shared / "dist"
    with _locked(dist):
        if not (dist / READY).exists():
            src = shared / "src"
            if not src.exists():
                copy_source(src)
            _run([*PIP, "wheel", "--no-deps", "--wheel-dir", dist, src], 300)
            (dist / READY).touch()
    [built] = dist.glob("stratoq-*.whl")
    return built


def venv(shared: Path, name: str, *requirements: str, with_pip: bool = False) -> Path:
    """A fresh venv (made once) with `requirements` installed; "{wheel}" in one stands
    for the wheel's path, as in "{wheel}[local]". `with_pip`: the venv keeps its own pip,
    as `python3 -m venv` makes it, for commands that run `python3 -m pip`."""
    built = wheel(shared)
    env = shared / name
    with _locked(env):
        if not (env / READY).exists():
            seed = [] if with_pip else ["--without-pip"]
            _run([PYTHON, "-m", "venv", *seed, "--clear", env], 120)
            wanted = [r.format(wheel=built) for r in requirements]
            python = env / "bin" / "python"
            if UV.exists():
                _run([UV, "pip", "install", "--quiet", "--python", python, *wanted], 600)
            else:
                _run([*PIP, "--python", python, "install", *wanted], 600)
            (env / READY).touch()
    return env


def user_env(venv: Path) -> dict[str, str]:
    """The environment of a user of `venv`: its bin first on PATH, no checkout on the path,
    no stratoq or AWS settings, no credentials, and a home of its own (no ~/.aws)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRATOQ_", "AWS_", "PYTHON", "VIRTUAL_ENV", "PIP_"))
    }
    home = venv.parent / f"{venv.name}-home"
    home.mkdir(exist_ok=True)
    # The instance metadata service would be asked for credentials otherwise.
    env |= {"HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true"}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = str(venv)
    return env
