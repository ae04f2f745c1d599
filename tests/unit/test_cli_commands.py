"""The command line's assembly: its command groups, and the dev stack as a plugin."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stratoq.cli import main as cli
from tests.conftest import ROOT
from tests.support.docs import console_script

COMMANDS = [
    "init",
    "dev",
    "worker",
    "provision",
    "backfill-listing",
    "enqueue",
    "status",
    "wait",
    "tasks",
    "cancel",
    "retry",
    "dlq",
    "queues",
    "top",
    "schedules",
    "scheduler",
    "workflows",
    "bridge",
    "keys",
    "webhooks",
]
INSTALL = "pip install 'stratoq[local]'"


def commands() -> list[str]:
    """The commands `stratoq --help` lists, in its order."""
    # Each command's line in the help: four spaces, the name, then its help or a newline.
    return re.findall(r"^    (\w[\w-]*)(?:\s|$)", cli.parser().format_help(), re.M)


def test_help_lists_every_command_in_order() -> None:
    assert commands() == COMMANDS


def test_the_product_cli_never_imports_the_dev_stack() -> None:
    for path in sorted((ROOT / "functions" / "stratoq" / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            local = [n for n in names if n == "stratoq.local" or n.startswith("stratoq.local.")]
            assert not local, f"{Path(path).name} imports {local}"


def test_dev_stays_when_the_plugin_cannot_be_imported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "stratoq.local.commands", None)
    assert commands() == COMMANDS
    for argv in (["dev"], ["dev", "--port", "8080"], ["dev", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("stratoq: `stratoq dev` needs the dev stack (the embedded AWS")
        assert INSTALL in err


def test_dev_stays_without_the_entry_points(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    assert commands() == COMMANDS
    with pytest.raises(SystemExit) as exit_:
        cli.main(["provision", "--stack", "s"])
    assert exit_.value.code == 2
    assert INSTALL in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "module"),
    [(["dev"], "moto.server"), (["dev"], "samtranslator"), (["provision"], "yaml")],
)
def test_a_missing_local_extra_is_a_sentence(
    argv: list[str],
    module: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"`stratoq {argv[0]}` needs" in err
    assert INSTALL in err


def test_the_bridge_without_its_extra_is_a_sentence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pika", None)
    monkeypatch.delitem(sys.modules, "stratoq.runtime.rabbitmq", raising=False)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bridge", "rabbitmq", "--queue", "tasks", "--url", "amqp://127.0.0.1:1/"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("stratoq: `stratoq bridge rabbitmq` needs the RabbitMQ client")
    assert err.endswith("pip install 'stratoq[bridge]'\n")


def against_no_aws(command: list[str], cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with its AWS endpoint a closed port: a worker stops at its first call."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT / "functions"),
        "HOME": str(cwd),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "STRATOQ_AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "STRATOQ_ALLOW_UNENCRYPTED": "1",
        "STRATOQ_METRICS_PORT": "0",
    }
    return subprocess.run(
        [*command, *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_tasks_module_of_the_current_directory_is_imported(tmp_path: Path) -> None:
    # The installed script, not `python -m` (which would put the directory on sys.path).
    script = console_script(tmp_path / "bin")
    project = tmp_path / "project"
    (project / "myapp").mkdir(parents=True)
    (project / "myapp" / "tasks.py").write_text(
        "import pathlib\npathlib.Path('imported').write_text('myapp.tasks')\n"
    )
    proc = against_no_aws([str(script)], project, "worker", "--tasks", "myapp.tasks")
    assert "cannot import tasks module" not in proc.stderr
    assert (project / "imported").read_text() == "myapp.tasks"


def test_an_unreachable_aws_endpoint_is_a_sentence(tmp_path: Path) -> None:
    # A worker pointed at an emulator that is not running (first hour: `stratoq dev` not
    # started yet) used to end in botocore's EndpointConnectionError traceback.
    argv = ["--aws-endpoint-url", "http://127.0.0.1:9", "worker", "-c", "1"]
    proc = against_no_aws([sys.executable, "-m", "stratoq"], tmp_path, *argv)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("stratoq: cannot reach AWS at http://127.0.0.1:9")
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["cancel"], "give a task id, or at least one of --queue, --name, --status"),
        (["cancel", "abc", "--queue", "q"], "give a task id or filters"),
        (["cancel", "--created-before", "yesterday"], "--created-before 'yesterday' is not an"),
        (["cancel", "--status", "succeeded"], "invalid choice: 'succeeded'"),
        (["tasks", "--created-after", "yesterday"], "--created-after 'yesterday' is not an"),
        (["retry", "--failed", "--created-before", "soon"], "--created-before 'soon' is not"),
        (["retry", "abc", "--queue", "q"], "go with --failed, not with a task id"),
    ],
)
def test_cancel_says_what_is_wrong_with_its_input(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--api-url", "http://127.0.0.1:9", "--api-key", "k", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
