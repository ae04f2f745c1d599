"""`pip install stratoq` as a user does it: the wheel, in a fresh venv, without extras.

The commands that need an extra ([local]: the embedded emulator and the SAM translator;
[bridge]: the RabbitMQ client) exit 2 with one sentence naming the extra to install,
never a traceback; the package itself imports and the CLI helps without any.

The wheel is built from a copy of the sources (the checkout stays clean) and installed
with the test run's own pip into a venv that has none (`--without-pip` saves the
seconds of ensurepip); the dependencies come from the index, through pip's cache after
the first run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.support.artifacts import copy_source


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the stratoq wheel installed, no extra."""
    tmp = tmp_path_factory.mktemp("install")
    src = copy_source(tmp / "src")
    pip = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", tmp / "dist", src],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp / "dist").glob("stratoq-*.whl")
    env = tmp / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", env], check=True, timeout=120)
    installed = subprocess.run(
        [*pip, "--python", env / "bin" / "python", "install", wheel],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env


def run(venv: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A command of the venv as a user runs it: no checkout on the path, no stratoq or
    AWS settings, no credentials, and a home of its own (no ~/.aws)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STRATOQ_", "AWS_", "PYTHON", "VIRTUAL_ENV"))
    }
    home = venv.parent / "home"
    home.mkdir(exist_ok=True)
    # The instance metadata service would be asked for credentials otherwise.
    env |= {"HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true"}
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=cwd or home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_package_imports_and_the_cli_helps_without_extras(venv: Path) -> None:
    where = run(venv, "python", "-c", "import stratoq; print(stratoq.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(venv))  # the wheel's copy, not the checkout
    for module in ("moto", "samtranslator", "yaml", "pika"):  # no extra came along
        assert run(venv, "python", "-c", f"import {module}").returncode != 0, module
    helped = run(venv, "stratoq", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "dev" in helped.stdout and "provision" in helped.stdout
    assert run(venv, "stratoq", "dev", "--help").returncode == 0


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["dev"], "local"),
        (["dev", "--port", "0", "--tls"], "local"),
        (["provision"], "local"),
        (["provision", "--stack", "mine"], "local"),
        (["bridge", "rabbitmq", "--queue", "tasks", "--url", "amqp://127.0.0.1:1/"], "bridge"),
    ],
)
def test_a_command_without_its_extra_names_the_extra(
    venv: Path, argv: list[str], extra: str
) -> None:
    out = run(venv, "stratoq", *argv)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    [sentence] = out.stderr.splitlines()
    assert sentence.startswith(
        f"stratoq: `stratoq {' '.join(argv[: 2 if extra == 'bridge' else 1])}`"
    )
    assert sentence.endswith(f"pip install 'stratoq[{extra}]'")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        # The rule clock needs no extra (the container's scheduler role runs it): without
        # settings it stops at the first one missing.
        (["scheduler"], "STRATOQ_KMS_KEY_ID"),
        # Against AWS (no --aws-endpoint-url) without credentials.
        (["worker"], "no AWS credentials"),
        (["backfill-listing"], "no AWS credentials"),
    ],
)
def test_commands_without_configuration_say_what_is_missing(
    venv: Path, argv: list[str], says: str
) -> None:
    out = run(venv, "stratoq", *argv)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    [sentence] = out.stderr.splitlines()
    assert says in sentence
