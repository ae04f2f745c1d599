"""A real Prometheus server (Debian's `prometheus` package) for end-to-end metric tests."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml

from tests.conftest import ROOT
from tests.support.procs import wait_for

INFRA = ROOT / "infra" / "prometheus"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
MISSING = (
    "the prometheus and promtool binaries are not installed: `apt-get install prometheus` "
    "(Debian's package; .ci/run installs it, so CI runs these tests)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_config(targets: list[str], interval: str = "1s") -> dict[str, Any]:
    """infra/prometheus/prometheus-dev.yml, pointed at `targets`, scraping every `interval`."""
    config = yaml.safe_load((INFRA / "prometheus-dev.yml").read_text())
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(INFRA / pattern) for pattern in config["rule_files"]]
    [job] = config["scrape_configs"]
    job["static_configs"] = [{"targets": targets}]
    return config


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, MISSING
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class Prometheus:
    url: str
    http: urllib3.PoolManager
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        resp = self.http.request("GET", f"{self.url}/api/v1/{path}?{query}")
        body = json.loads(resp.data)
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return list(data["result"])

    def values(self, expr: str, by: str) -> dict[str, float]:
        """{label value: sample value} of an instant vector."""
        return {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@contextmanager
def running(tmp: Path, config: dict[str, Any]) -> Iterator[Prometheus]:
    """Prometheus on a free 127.0.0.1 port with `config`; stopped on exit."""
    assert PROMETHEUS is not None, MISSING
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = promtool("check", "config", str(path))
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={path}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prom = Prometheus(
        f"http://127.0.0.1:{port}", urllib3.PoolManager(timeout=10, retries=False), log
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited {proc.returncode}:\n{log.read_text()}")
        try:
            return prom.http.request("GET", prom.url + "/-/ready").status == 200
        except urllib3.exceptions.HTTPError:
            return False

    try:
        wait_for(ready, 30, "prometheus to be ready")
        yield prom
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
