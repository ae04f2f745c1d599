"""Offline checks of infra/prometheus and infra/grafana against the metrics the code exports.

The end-to-end test (tests/e2e/test_metrics.py) evaluates every expression against a real
Prometheus; these catch a renamed metric, a missing doc entry or a rules copy out of sync
without one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratoq.observability import specs as metrics
from tests.conftest import ROOT

GRAFANA = ROOT / "infra" / "grafana"
PROMETHEUS = ROOT / "infra" / "prometheus"
RULES = PROMETHEUS / "rules" / "stratoq.rules.yml"
DASHBOARD = GRAFANA / "dashboards" / "stratoq.json"
CLOUDWATCH = GRAFANA / "cloudwatch" / "dashboards" / "stratoq-cloudwatch.json"
DOCS = ROOT / "docs" / "monitoring.md"
METRIC = re.compile(r"\bstratoq_[a-z_]+\b")


def load_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dash["panels"] if p["type"] != "row"]


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


@pytest.mark.parametrize("path", [DASHBOARD, CLOUDWATCH], ids=["prometheus", "cloudwatch"])
def test_dashboard_layout(path: Path) -> None:
    dash = load_json(path)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    for p in panels(dash):
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p.get("description") is not None, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
    titles = [p["title"] for p in panels(dash)]
    assert len(titles) == len(set(titles))


def test_prometheus_dashboard_reads_only_exported_metrics_and_all_of_them() -> None:
    exported = metrics.exposed_names()
    used: set[str] = set()
    for p in panels(load_json(DASHBOARD)):
        for t in p["targets"]:
            names = set(METRIC.findall(t["expr"]))
            assert names, (p["title"], t["expr"])
            assert names <= exported, (p["title"], names - exported)
            used |= names
    for spec in metrics.SPECS:
        wanted = spec.name + "_bucket" if spec.kind == "histogram" else spec.name
        assert wanted in used, f"{spec.name} is on no panel"


def test_dashboard_variables_filter_the_task_panels() -> None:
    dash = load_json(DASHBOARD)
    names = {v["name"] for v in dash["templating"]["list"]}
    assert names == {"datasource", "queue", "task_name"}
    for p in panels(dash):
        for t in p["targets"]:
            for name in set(METRIC.findall(t["expr"])):
                spec = next(s for s in metrics.SPECS if name.startswith(s.name))
                if "queue" in spec.labels:
                    assert 'queue=~"$queue"' in t["expr"], (p["title"], t["expr"])
                if "task_name" in spec.labels:
                    assert 'task_name=~"$task_name"' in t["expr"], (p["title"], t["expr"])


def test_cloudwatch_dashboard_reads_the_emf_names() -> None:
    emf = {s.name for s in metrics.SPECS if s.emf}
    sqs = {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateAgeOfOldestMessage",
    }
    for p in panels(load_json(CLOUDWATCH)):
        for t in p["targets"]:
            if t["metricEditorMode"] == 1:  # math or SEARCH expressions
                assert t["expression"], p["title"]
                continue
            if t["namespace"] == "stratoq":
                assert t["metricName"] in emf, (p["title"], t["metricName"])
                assert set(t["dimensions"]) in (
                    {"queue"},
                    {"queue", "task_name"},
                    {"queue", "outcome"},
                )
            else:
                assert t["namespace"] == "AWS/SQS" and t["metricName"] in sqs, p["title"]


def test_rules_read_only_exported_metrics_and_alerts_are_documented() -> None:
    exported = metrics.exposed_names()
    records = {r["record"] for r in rules() if "record" in r}
    for rule in rules():
        names = set(METRIC.findall(rule["expr"])) - {n.split(":")[1] for n in records}
        assert names <= exported, (rule.get("alert") or rule.get("record"), names - exported)
        if "alert" in rule:
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    alerts = [r["alert"] for r in rules() if "alert" in r]
    assert len(alerts) == len(set(alerts))
    assert {
        "StratoqDeadLetterQueueNotEmpty",
        "StratoqHighFailureRatio",
        "StratoqOldestMessageTooOld",
        "StratoqNoWorkerHeartbeats",
    } <= set(alerts)


def test_the_operator_copy_of_the_rules_is_identical() -> None:
    crd = yaml.safe_load((PROMETHEUS / "k8s" / "prometheusrule.yaml").read_text())
    assert crd["kind"] == "PrometheusRule"
    assert crd["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_every_config_loads_the_rules() -> None:
    for name in ("prometheus.yml", "prometheus-dev.yml", "prometheus-k8s.yml"):
        config = yaml.safe_load((PROMETHEUS / name).read_text())
        found = [f for pattern in config["rule_files"] for f in PROMETHEUS.glob(pattern)]
        assert RULES in found, name
    dev = yaml.safe_load((PROMETHEUS / "prometheus-dev.yml").read_text())
    [job] = dev["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]  # `stratoq dev`'s default


def test_grafana_provisioning_finds_the_dashboards() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(
        v.split(":")[:2][::-1] for v in compose["services"]["grafana"]["volumes"] if ":" in v
    )
    for provisioning, dashboards in (
        (GRAFANA / "provisioning", DASHBOARD),
        (GRAFANA / "cloudwatch" / "provisioning", CLOUDWATCH),
    ):
        [provider] = [
            p
            for f in (provisioning / "dashboards").glob("*.yml")
            for p in yaml.safe_load(f.read_text())["providers"]
        ]
        container_path = provider["options"]["path"]
        target = next(t for t in mounts if container_path.startswith(t + "/"))
        assert mounts[target] == "./infra/grafana"
        on_disk = GRAFANA / container_path.removeprefix(target + "/")
        assert dashboards.parent == on_disk
    [cloudwatch] = yaml.safe_load(
        (GRAFANA / "cloudwatch" / "provisioning" / "datasources" / "cloudwatch.yml").read_text()
    )["datasources"]
    assert cloudwatch["type"] == "cloudwatch"


def test_monitoring_docs_describe_every_panel_and_alert() -> None:
    text = DOCS.read_text()
    for path in (DASHBOARD, CLOUDWATCH):
        for p in panels(load_json(path)):
            assert p["title"] in text, f"docs/monitoring.md does not describe panel {p['title']!r}"
    for rule in rules():
        if "alert" in rule:
            assert rule["alert"] in text, rule["alert"]
    for spec in metrics.SPECS:
        assert spec.name in text, spec.name
