"""A real `stratoq dev` process per test module, driven only over HTTP and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import urllib3

from stratoq import Client
from stratoq.adapters import aws
from stratoq.core.settings import Settings
from tests.conftest import PYTHON, ROOT
from tests.support.procs import wait_for

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient


@dataclass
class DevStack:
    api_url: str
    api_key: str
    metrics_url: str
    aws_endpoint_url: str
    state_file: Path
    proc: subprocess.Popen[bytes]
    log: Path
    http: urllib3.PoolManager

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = "admin",
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["x-api-key"] = self.api_key if key == "admin" else key
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        resp = self.http.request(method, self.api_url + path, body=data, headers=headers)
        try:
            return resp.status, json.loads(resp.data) if resp.data else None
        except ValueError:
            return resp.status, resp.data.decode()

    def sqs(self) -> SQSClient:
        """An SQS client on the stack's emulator (placeholder credentials, as the CLI)."""
        return aws.sqs(Settings(aws_endpoint_url=self.aws_endpoint_url))

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
        env["STRATOQ_DEV_FILE"] = str(self.state_file)
        return subprocess.run(
            [PYTHON, "-m", "stratoq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def cli_in(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI run from `cwd` as a user runs it there: the API only from the
    .stratoq/dev.json it finds (no STRATOQ_DEV_FILE, no STRATOQ_API_URL/_KEY)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    return subprocess.run(
        [PYTHON, "-m", "stratoq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def project_of(stack: DevStack, root: Path) -> Path:
    """A project directory whose .stratoq/dev.json is the stack's (as `stratoq dev` run at
    its top would leave it), and a subdirectory of it two levels down."""
    (root / ".stratoq").mkdir(parents=True)
    shutil.copy2(stack.state_file, root / ".stratoq" / "dev.json")
    deep = root / "src" / "app"
    deep.mkdir(parents=True)
    return deep


def start_dev(tmp: Path, *extra: str, env_extra: dict[str, str] | None = None) -> DevStack:
    state = tmp / "dev.json"
    log = tmp / "dev.log"
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "functions")])
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("STRATOQ_API_KEY", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "stratoq",
                "dev",
                "--port",
                "0",
                "--metrics-port",
                "0",
                "--state-file",
                str(state),
                "--tasks",
                "tests.support.tasks",
                *extra,
            ],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> dict[str, str] | None:
        if proc.poll() is not None:
            raise AssertionError(f"stratoq dev exited {proc.returncode}:\n{log.read_text()}")
        return json.loads(state.read_text()) if state.exists() else None

    facts = wait_for(ready, 60, "stratoq dev to write its state file")
    return DevStack(
        api_url=facts["api_url"],
        api_key=facts["api_key"],
        metrics_url=facts["metrics_url"],
        aws_endpoint_url=facts["aws_endpoint_url"],
        state_file=state,
        proc=proc,
        log=log,
        http=urllib3.PoolManager(timeout=30, retries=False),
    )


def stop_dev(stack: DevStack) -> int:
    if stack.proc.poll() is None:
        stack.proc.send_signal(signal.SIGTERM)
        try:
            return stack.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.proc.pid, signal.SIGKILL)
            stack.proc.wait(10)
            raise
    return stack.proc.returncode


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    stack = start_dev(tmp_path_factory.mktemp("dev"))
    try:
        yield stack
    finally:
        code = stop_dev(stack)
        assert code == 0, stack.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def client(dev: DevStack) -> Client:
    """The SDK on the module's dev stack, with its admin key."""
    return Client(dev.api_url, dev.api_key)


def key_for(dev: DevStack, tenant: str, scopes: str) -> str:
    """A new API key of `tenant` with `scopes` (space-separated), made over the API."""
    status, body = dev.request("POST", "/v1/keys", {"tenant": tenant, "scopes": scopes.split()})
    assert status == 201, body
    return str(body["key"])


@pytest.fixture(scope="session")
def stratoq_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stratoq wheel built from a copy of the sources, once per session."""
    from tests.support.install import session_dir, wheel

    return wheel(session_dir(tmp_path_factory))


@pytest.fixture(scope="session")
def bare_venv(tmp_path_factory: pytest.TempPathFactory, stratoq_wheel: Path) -> Path:
    """A fresh venv with the stratoq wheel installed, no extra (`pip install stratoq`)."""
    from tests.support.install import session_dir, venv

    return venv(session_dir(tmp_path_factory), "venv-bare", "{wheel}")


@pytest.fixture(scope="session")
def local_venv(tmp_path_factory: pytest.TempPathFactory, stratoq_wheel: Path) -> Path:
    """A fresh venv with `stratoq[local]` and pytest, as a project's developer has (and
    pip, which a project's `make install` runs)."""
    from tests.support.install import session_dir, venv

    return venv(
        session_dir(tmp_path_factory), "venv-local", "{wheel}[local]", "pytest>=8", with_pip=True
    )
