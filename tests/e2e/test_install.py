"""`pip install stratoq` as a user does it: the wheel, in a fresh venv, without extras.

The commands that need an extra ([local]: the embedded emulator and the SAM translator;
[bridge]: the RabbitMQ client) exit 2 with one sentence naming the extra to install,
never a traceback; the package itself imports and the CLI helps without any.

The wheel and the venv are the session's (tests/support/install.py, the `bare_venv`
fixture of tests/e2e/conftest.py), shared with the other tests of the installed package.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.install import user_env


@pytest.fixture(scope="module")
def venv(bare_venv: Path) -> Path:
    return bare_venv


def run(venv: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A command of the venv as a user runs it (tests.support.install.user_env)."""
    env = user_env(venv)
    return subprocess.run(
        [str(venv / "bin" / argv[0]), *argv[1:]],
        cwd=cwd or env["HOME"],
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


def test_the_wheel_ships_the_template_that_stratoq_dev_provisions(venv: Path) -> None:
    # Outside any project (the venv's home has no pyproject.toml): the packaged copy.
    out = run(
        venv,
        "python",
        "-c",
        "from pathlib import Path; from stratoq.project import template_path; "
        "print(template_path(Path.cwd()))",
    )
    assert out.returncode == 0, out.stderr
    packaged = Path(out.stdout.strip())
    assert packaged.is_relative_to(venv)
    assert not packaged.is_symlink()  # the build copied the checkout's symlink's target
    assert packaged.read_text() == (ROOT / "template.yaml").read_text()
