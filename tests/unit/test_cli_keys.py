"""`stratoq keys bootstrap`'s refusals: exit 2 with one sentence, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratoq.cli import main as cli
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("argv", "sentence"),
    [
        (["--scopes", "root"], "stratoq: scopes must be some of tasks:read, tasks:write, admin"),
        (["--scopes", " , "], "stratoq: scopes must be some of"),
        (["--tenant", "no spaces"], "stratoq: tenant 'no spaces' must match"),
    ],
)
def test_bad_tenant_or_scopes_are_refused_before_aws_is_asked(
    argv: list[str], sentence: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A closed port: reaching AWS would be another error.
    with pytest.raises(SystemExit) as exit_:
        cli.main(["keys", "bootstrap", "--endpoint-url", "http://127.0.0.1:9", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(sentence)
    assert len(err.splitlines()) == 1


def bootstrap(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command in a process with no AWS configuration at all (and no instance role)."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "functions"),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "stratoq", "keys", "bootstrap", *argv],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("argv", "env", "sentence"),
    [
        ([], {}, "stratoq: no AWS credentials"),
        (["--profile", "nope"], {}, "stratoq: AWS: The config profile (nope) could not be found"),
        (
            ["--endpoint-url", "http://127.0.0.1:9"],
            {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
            "stratoq: cannot reach AWS at http://127.0.0.1:9",
        ),
    ],
)
def test_aws_that_cannot_be_used_is_a_sentence(
    argv: list[str], env: dict[str, str], sentence: str, tmp_path: Path
) -> None:
    proc = bootstrap(tmp_path, *argv, **env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith(sentence)
    assert len(proc.stderr.splitlines()) == 1
