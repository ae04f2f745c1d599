"""Logs: the core logs through the standard library, Powertools' Logger lives at the
Lambda edge only, and every process writes the same JSON lines (stratoq.observability.logging).

Logging is process-wide state, so the tests that set it up run in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from stratoq.observability.logging import JsonFormatter
from tests.conftest import ROOT

PACKAGE = ROOT / "functions" / "stratoq"


def record(msg: object, *args: object, **extra: Any) -> logging.LogRecord:
    exc_info = extra.pop("exc_info", None)
    rec = logging.LogRecord(
        "stratoq.services.worker", logging.WARNING, __file__, 42, msg, args, exc_info, "beat"
    )
    rec.__dict__.update(extra)
    return rec


def failure() -> Any:
    try:
        raise KeyError("boom")
    except KeyError:
        return sys.exc_info()


@pytest.mark.parametrize(
    "rec",
    [
        record("task succeeded", task_id="t1", attempt=2, retry_in_s=1.5),
        record("lease heartbeat failed", task_id="t1", exc_info=failure()),
        record("%s tasks from %s", 3, "rabbitmq"),
        record({"already": "structured"}),
        record('{"json": "in a string"}'),
        record("broker message skipped", source="rabbitmq", reason=None, ids=["a", "b"]),
    ],
    ids=["extra", "exception", "args", "dict", "json-string", "none-and-list"],
)
def test_the_json_line_is_the_one_powertools_writes(rec: logging.LogRecord) -> None:
    ours = JsonFormatter().format(rec)
    theirs = LambdaPowertoolsFormatter(service="stratoq").format(rec)
    assert json.loads(ours) == json.loads(theirs)
    assert list(json.loads(ours)) == list(json.loads(theirs))  # the same key order


def run(code: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return [json.loads(line) for line in out.stdout.splitlines()]


CORE_LOGS = """
import logging
logging.getLogger("stratoq.services.worker").info("task succeeded", extra={"task_id": "t1"})
logging.getLogger("stratoq.services.worker").debug("not at INFO")
"""


def test_a_poller_process_writes_json_lines() -> None:
    lines = run("from stratoq.observability.logging import configure; configure()" + CORE_LOGS)
    [line] = lines
    assert line["message"] == "task succeeded"
    assert line["task_id"] == "t1"
    assert line["service"] == "stratoq"
    assert line["level"] == "INFO"


@pytest.mark.parametrize("configure_first", [False, True], ids=["edge-only", "configure-first"])
def test_at_the_lambda_edge_powertools_formats_the_core_loggers(configure_first: bool) -> None:
    # A Lambda function configures nothing but its Powertools Logger; the dev stack also
    # runs pollers (configure()) in the same process: either way one line per record,
    # with the keys the edge appends (the Lambda context, here a stand-in).
    setup = "from stratoq.observability.logging import configure; configure()\n"
    code = (
        (setup if configure_first else "")
        + "from stratoq.handlers import worker\n"
        + "worker.logger.append_keys(function_request_id='req-1')\n"
        + CORE_LOGS
        + setup
        + CORE_LOGS
    )
    lines = run(code)
    assert len(lines) == 2
    for line in lines:
        assert line["message"] == "task succeeded"
        assert line["task_id"] == "t1"
        assert line["function_request_id"] == "req-1"


def powertools_logger_imports(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "aws_lambda_powertools"
        ):
            if any(alias.name == "Logger" for alias in node.names):
                return True
            if (node.module or "").startswith("aws_lambda_powertools.logging"):
                return True
    return False


def test_only_the_edges_use_the_powertools_logger() -> None:
    layers = ("core", "adapters", "services", "observability", "runtime", "api", "sdk")
    offenders = [
        str(p.relative_to(PACKAGE))
        for layer in layers
        for p in sorted((PACKAGE / layer).rglob("*.py"))
        if powertools_logger_imports(p)
    ]
    assert offenders == []
    assert powertools_logger_imports(PACKAGE / "handlers" / "worker.py")  # the check sees it
