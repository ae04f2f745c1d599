"""The deploy helpers against the emulator: scripts/bootstrap-key, the data-plane mode of
scripts/deploy-localstack and docker-compose's provision step (infra/localstack/init)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from stratoq.adapters import aws
from stratoq.adapters.keys import KeyStore
from stratoq.core.settings import Settings
from tests.conftest import PYTHON, ROOT, subprocess_env

FIXED_KEY = "sq_0123456789ab_" + "k" * 32


def run(args: list[str | Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def script_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = subprocess_env(settings, PYTHON=PYTHON)
    env.pop("STRATOQ_BOOTSTRAP_KEY", None)
    env.update(extra)
    return env


def exports(stdout: str) -> dict[str, str]:
    """The variables of `export K=V` lines, as a shell would read them."""
    found = {}
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        key, _, value = words[1].partition("=")
        found[key] = value
    return found


# ------------------------------------------------------------------ bootstrap-key
def test_bootstrap_key_creates_an_admin_key_on_the_stack(settings: Settings) -> None:
    env = script_env(settings)
    out = run(
        [ROOT / "scripts" / "bootstrap-key", "--endpoint-url", settings.aws_endpoint_url or ""],
        env,
    )
    assert out.returncode == 0, out.stderr
    [key] = out.stdout.split()
    keys = KeyStore(aws.dynamodb(settings), settings.keys_table)
    record = keys.lookup(key)
    assert record is not None
    assert record.tenant == "admin"
    assert record.scopes == ("admin",)
    assert record.name == "bootstrap"
    assert record.key_id in out.stderr
    assert key not in out.stderr  # shown once, on stdout only


def test_bootstrap_key_with_a_fixed_key_is_idempotent(settings: Settings) -> None:
    env = script_env(settings, STRATOQ_BOOTSTRAP_KEY=FIXED_KEY)
    args = [
        ROOT / "scripts" / "bootstrap-key",
        "--endpoint-url",
        settings.aws_endpoint_url or "",
        "--tenant",
        "ops",
        "--scopes",
        "tasks:read,tasks:write",
    ]
    first = run(args, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == FIXED_KEY
    again = run(args, env)
    assert again.returncode == 0, again.stderr
    keys = KeyStore(aws.dynamodb(settings), settings.keys_table)
    assert [k.key_id for k in keys.list_keys()] == ["0123456789ab"]
    record = keys.lookup(FIXED_KEY)
    assert record is not None
    assert record.tenant == "ops"
    assert record.scopes == ("tasks:read", "tasks:write")
    # The key never travels on the command line.
    assert FIXED_KEY not in " ".join(map(str, args))


def test_bootstrap_key_reports_a_missing_stack_and_bad_scopes(settings: Settings) -> None:
    env = script_env(settings)
    endpoint = settings.aws_endpoint_url or ""
    missing = run(
        [ROOT / "scripts" / "bootstrap-key", "--endpoint-url", endpoint, "--stack", "nope"], env
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("bootstrap-key:")
    assert "nope" in missing.stderr
    bad = run(
        [ROOT / "scripts" / "bootstrap-key", "--endpoint-url", endpoint, "--scopes", "root"], env
    )
    assert bad.returncode == 1
    assert "scopes must be some of" in bad.stderr
    assert KeyStore(aws.dynamodb(settings), settings.keys_table).list_keys() == []


# ------------------------------------------------------------- deploy-localstack
def test_deploy_localstack_data_plane_creates_a_usable_stack(settings: Settings) -> None:
    env = script_env(settings)
    endpoint = settings.aws_endpoint_url or ""
    args = [
        ROOT / "scripts" / "deploy-localstack",
        "--data-plane-only",
        "--endpoint-url",
        endpoint,
        "--stack",
        "lsdemo",
        "--wait",
        "5",
    ]
    out = run(args, env)
    assert out.returncode == 0, out.stderr
    env_vars = exports(out.stdout)
    deployed = Settings.from_env(env_vars)
    assert deployed.aws_endpoint_url == endpoint
    assert deployed.tasks_table == "lsdemo-tasks"
    assert deployed.keys_table == "lsdemo-keys"
    assert deployed.queues["default"].endswith("/lsdemo-default")
    # The resources exist and the settings reach them.
    aws.dynamodb(deployed).describe_table(TableName=deployed.tasks_table)
    aws.sqs(deployed).get_queue_attributes(QueueUrl=deployed.queues["default"])
    # Again: nothing new, the same answer.
    again = run(args, env)
    assert again.returncode == 0, again.stderr
    assert exports(again.stdout) == env_vars


def test_deploy_localstack_gives_up_on_a_silent_endpoint(settings: Settings) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(
        [
            ROOT / "scripts" / "deploy-localstack",
            "--data-plane-only",
            "--endpoint-url",
            f"http://127.0.0.1:{port}",
            "--wait",
            "1",
        ],
        script_env(settings),
    )
    assert out.returncode != 0
    assert "nothing answers" in out.stderr


# ------------------------------------------------- docker-compose's provision step
def test_compose_provision_step_creates_the_stack_and_the_key(settings: Settings) -> None:
    script = ROOT / "infra" / "localstack" / "init" / "provision.sh"
    env = script_env(
        settings,
        STRATOQ_STACK="composed",
        STRATOQ_BOOTSTRAP_KEY=FIXED_KEY,
        STRATOQ_CLI=str(Path(PYTHON).parent / "stratoq"),
    )
    env["PATH"] = os.pathsep.join([str(Path(PYTHON).parent), env.get("PATH", "")])
    for _ in range(2):  # idempotent: the second run finds the stack and the key
        out = run(["bash", script], env)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        provisioned = Settings.from_env(exports("\n".join(lines[:-1])))
        assert provisioned.tasks_table == "composed-tasks"
        assert lines[-1] == "provision: admin key 0123456789ab (tenant admin) is stored"
    record = KeyStore(aws.dynamodb(provisioned), "composed-keys").lookup(FIXED_KEY)
    assert record is not None
    assert record.scopes == ("admin",)


def test_compose_provision_step_needs_an_endpoint(settings: Settings) -> None:
    env = script_env(settings)
    env.pop("STRATOQ_AWS_ENDPOINT_URL")
    out = run(["bash", ROOT / "infra" / "localstack" / "init" / "provision.sh"], env)
    assert out.returncode != 0
    assert "STRATOQ_AWS_ENDPOINT_URL" in out.stderr
