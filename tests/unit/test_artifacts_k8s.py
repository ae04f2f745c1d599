"""The Kubernetes manifests checked offline: rendered (kubectl kustomize or a fallback),
validated against the Kubernetes schemas, and read for the settings they give pollers."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratoq.core.settings import Settings
from tests.support.artifacts import K8S, STACK_QUEUES, check_payload_encryption, run


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    """Offline stand-in for `kubectl kustomize` for the features the manifests use:
    resources (files and directories) and JSON 6902 patches with a target."""
    import jsonpatch

    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"the fallback renderer does not know {unknown}: extend it"
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs += render_kustomization(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in spec.get("patches", []):
        target, ops = patch["target"], yaml.safe_load(patch["patch"])
        hits = [
            i
            for i, d in enumerate(docs)
            if d["kind"] == target["kind"]
            and d["metadata"]["name"] == target["name"]
            and ("group" not in target or d["apiVersion"].split("/")[0] == target["group"])
        ]
        assert hits, f"patch target {target} matches nothing"
        for i in hits:
            docs[i] = jsonpatch.apply_patch(docs[i], ops)
    return docs


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = run(kubectl, "kustomize", directory, timeout=60)
    if out.returncode != 0:
        return None
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render(directory: Path) -> list[dict[str, Any]]:
    return kubectl_kustomize(directory) or render_kustomization(directory)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for d in docs:
        assert d["kind"] not in found, f"two {d['kind']}s: the tests expect one of each"
        found[d["kind"]] = d
    return found


@pytest.fixture(scope="module")
def base() -> dict[str, dict[str, Any]]:
    return by_kind(render(K8S / "base"))


@pytest.fixture(scope="module")
def localstack_overlay() -> dict[str, dict[str, Any]]:
    return by_kind(render(K8S / "overlays" / "localstack"))


def key(d: dict[str, Any]) -> tuple[str, str]:
    return d["kind"], d["metadata"]["name"]


@pytest.mark.parametrize("directory", ["base", "overlays/localstack"])
def test_fallback_renderer_matches_kubectl(directory: str) -> None:
    rendered = kubectl_kustomize(K8S / directory)
    if rendered is None:
        pytest.skip("kubectl (with kustomize) is not installed; the fallback renders")
    fallback = render_kustomization(K8S / directory)
    assert sorted(map(key, rendered)) == sorted(map(key, fallback))
    assert {key(d): d for d in rendered} == {key(d): d for d in fallback}


CORE_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
}
# The fields the CRD kinds need (KEDA 2.x, Prometheus Operator), checked without their
# full CRD schemas, which kubernetes-validate does not ship.
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {"type": "object", "required": ["name"]},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "properties": {
                                "metadata": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                }
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {"type": "object", "minProperties": 1},
        },
    },
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["port"]},
                    }
                },
            },
        },
    },
}
K8S_VERSIONS = ("1.29.0", "1.37.0")


def k8s_validate(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extras)"
    )
    if doc["kind"] in CRD_SCHEMAS:
        import jsonschema

        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, version, strict=True)
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", ["base", "overlays/localstack"])
def test_manifests_validate(directory: str, version: str) -> None:
    docs = render(K8S / directory)
    kinds = {d["kind"] for d in docs}
    assert kinds >= (CORE_KINDS - {"Secret"}) | set(CRD_SCHEMAS)
    assert kinds <= CORE_KINDS | set(CRD_SCHEMAS)
    for doc in docs:
        k8s_validate(doc, version)


def test_strict_validation_catches_mistakes(base: dict[str, dict[str, Any]]) -> None:
    import jsonschema

    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = copy.deepcopy(base["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["envFrm"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    scaled = copy.deepcopy(base["ScaledObject"])
    scaled["spec"]["triggers"][0]["metadata"]["queueLength"] = 8
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, CRD_SCHEMAS["ScaledObject"])


def test_base_is_namespace_less(base: dict[str, dict[str, Any]]) -> None:
    for doc in base.values():
        assert "namespace" not in doc["metadata"], doc["kind"]


def config_settings(docs: dict[str, dict[str, Any]]) -> Settings:
    return Settings.from_env(docs["ConfigMap"]["data"])


def test_configmap_holds_valid_stratoq_settings(base: dict[str, dict[str, Any]]) -> None:
    data = base["ConfigMap"]["data"]
    known = set(Settings().to_env()) | {"STRATOQ_METRICS_PORT"}
    unknown = {k for k in data if k.startswith("STRATOQ_")} - known
    assert not unknown, f"settings stratoq does not read: {unknown}"
    settings = config_settings(base)
    assert settings.aws_endpoint_url is None  # real AWS
    assert settings.tasks_table == "stratoq-tasks"
    assert settings.queues == STACK_QUEUES
    check_payload_encryption(settings)
    assert all(isinstance(v, str) for v in data.values())


def pod(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return dict(docs["Deployment"]["spec"]["template"])


def test_poller_deployment_drains_longer_than_a_task_runs(base: dict[str, dict[str, Any]]) -> None:
    spec = pod(base)["spec"]
    [container] = spec["containers"]
    args = container["args"]
    assert args[0] == "worker"
    grace = float(args[args.index("--shutdown-grace") + 1])
    settings = config_settings(base)
    period = spec["terminationGracePeriodSeconds"]
    assert period > settings.default_timeout_seconds
    assert grace >= settings.default_timeout_seconds
    # After SIGTERM a long poll may still be in flight, then tasks get the grace.
    assert period >= grace + settings.poll_wait_seconds + 5
    # KEDA owns the replica count.
    assert "replicas" not in base["Deployment"]["spec"]


def test_poller_deployment_is_locked_down(base: dict[str, dict[str, Any]]) -> None:
    spec = pod(base)["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] >= 1000
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == base["ServiceAccount"]["metadata"]["name"]
    [container] = spec["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    # The read-only root needs a writable /tmp (task processes, temp files).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_poller_config_comes_from_configmap_and_secret(
    base: dict[str, dict[str, Any]], localstack_overlay: dict[str, dict[str, Any]]
) -> None:
    [container] = pod(base)["spec"]["containers"]
    sources = container["envFrom"]
    assert {"configMapRef": {"name": base["ConfigMap"]["metadata"]["name"]}} in sources
    [secret_ref] = [s["secretRef"] for s in sources if "secretRef" in s]
    # Optional in the base (IRSA needs no secret); the LocalStack overlay provides it.
    assert secret_ref["optional"] is True
    secret = localstack_overlay["Secret"]
    assert secret["metadata"]["name"] == secret_ref["name"]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_poller_metrics_are_scraped(base: dict[str, dict[str, Any]]) -> None:
    template = pod(base)
    [container] = template["spec"]["containers"]
    port = int(base["ConfigMap"]["data"]["STRATOQ_METRICS_PORT"])
    assert port == 9464
    [metrics] = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    service = base["Service"]
    labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == "metrics"
    monitor = base["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["endpoints"]] == [service_port["name"]]


def test_pdb_and_selectors_match_the_pods(base: dict[str, dict[str, Any]]) -> None:
    labels = pod(base)["metadata"]["labels"]
    selector = base["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdb = base["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"] == selector
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") is not None


def test_keda_scales_the_pollers_on_queue_depth(base: dict[str, dict[str, Any]]) -> None:
    scaled = base["ScaledObject"]["spec"]
    deployment = base["Deployment"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    settings = config_settings(base)
    # The queues KEDA watches are the ones the pollers read: every priority queue.
    assert sorted(t["metadata"]["queueURL"] for t in scaled["triggers"]) == sorted(
        settings.queues.values()
    )
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "aws-sqs-queue"
        meta = trigger["metadata"]
        assert meta["awsRegion"] == settings.region
        assert int(meta["queueLength"]) >= 1
        auth = trigger["authenticationRef"]["name"]
        assert auth == base["TriggerAuthentication"]["metadata"]["name"]
    # Scale-in does not outpace graceful draining.
    assert scaled["cooldownPeriod"] >= 60


def test_localstack_overlay_points_everything_at_localstack(
    base: dict[str, dict[str, Any]], localstack_overlay: dict[str, dict[str, Any]]
) -> None:
    endpoint = "http://localstack:4566"
    assert config_settings(localstack_overlay).aws_endpoint_url == endpoint
    triggers = localstack_overlay["ScaledObject"]["spec"]["triggers"]
    assert triggers and all(t["metadata"]["awsEndpoint"] == endpoint for t in triggers)
    auth = localstack_overlay["TriggerAuthentication"]["spec"]
    secret = localstack_overlay["Secret"]
    for ref in auth["secretTargetRef"]:
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {
        "awsAccessKeyID",
        "awsSecretAccessKey",
    }
    # Everything else is the base, unchanged.
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"):
        assert localstack_overlay[kind] == base[kind]
    changed = {
        k: v
        for k, v in localstack_overlay["ConfigMap"]["data"].items()
        if base["ConfigMap"]["data"][k] != v
    }
    assert changed == {"STRATOQ_AWS_ENDPOINT_URL": endpoint}
