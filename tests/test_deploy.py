"""docker-compose.yml, the Dockerfile and k8s/ are checked offline (no Docker engine or
cluster runs here): every rendered Kubernetes object validates against the API schema."""

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    "gateway": 8000,
    "registrar": 8001,
    "routing": 8002,
    "rating": 8003,
    "portability": 8004,
    "vpn-ca": 8005,
}
K8S_VERSION = "1.30.0"
# Custom resources of the operators the production overlay relies on: the fields they must carry.
OPERATOR_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"): ["instances", "storage"],
    ("postgresql.cnpg.io/v1", "Database"): ["name", "owner", "cluster"],
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): ["replicas"],
}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with kustomize) is installed by scripts/bootstrap"
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s/overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=["dev", "prod"])
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_object_validates(objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in OPERATOR_KINDS:
            for field in OPERATOR_KINDS[key]:
                assert field in obj["spec"], (
                    f"{obj['kind']}/{obj['metadata']['name']} lacks spec.{field}"
                )
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_each_service_has_deployment_probes_job_and_budget(objects: list[dict[str, Any]]) -> None:
    deployments, jobs = by_kind(objects, "Deployment"), by_kind(objects, "Job")
    budgets, autoscalers = (
        by_kind(objects, "PodDisruptionBudget"),
        by_kind(objects, "HorizontalPodAutoscaler"),
    )
    for service, port in SERVICES.items():
        pod = deployments[service]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]
        assert jobs[f"{service}-migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
            "migrate"
        ]
        assert service in budgets
        # The registrar holds bindings in memory: it is not scaled by CPU.
        assert (service in autoscalers) == (service != "registrar")


def test_only_gateway_http_and_registrar_sip_are_public(objects: list[dict[str, Any]]) -> None:
    policies = by_kind(objects, "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"]["podSelector"] == {}
    public = {
        name: p
        for name, p in policies.items()
        if any("from" not in rule for rule in p["spec"].get("ingress", []))
    }
    assert set(public) == {"gateway-public-http", "registrar-public-sip"}
    sip = by_kind(objects, "Service")["registrar-sip"]["spec"]["ports"]
    assert {(p["port"], p["protocol"]) for p in sip} == {(5060, "UDP"), (5060, "TCP")}


def test_prod_declares_postgres_and_rabbitmq_through_operators() -> None:
    kinds = {(o["apiVersion"], o["kind"]) for o in render("prod")}
    assert ("postgresql.cnpg.io/v1", "Cluster") in kinds
    assert ("rabbitmq.com/v1beta1", "RabbitmqCluster") in kinds
    databases = {o["spec"]["name"] for o in render("prod") if o["kind"] == "Database"}
    assert databases == {"centralino_" + s.replace("-", "_") for s in SERVICES}


def test_compose_runs_the_contract() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "rabbitmq", "otel-collector"} <= set(compose)
    assert "management" in compose["rabbitmq"]["image"]
    for service, port in SERVICES.items():
        spec = compose[service]
        assert f"{port}:{port}" in spec["ports"]
        assert spec["build"]["args"]["SERVICE"] == service
        assert spec["healthcheck"]["test"]
        assert (
            spec["depends_on"][f"{service}-migrate"]["condition"]
            == "service_completed_successfully"
        )
        assert compose[f"{service}-migrate"]["command"] == ["migrate"]
        assert spec["environment"]["DATABASE_URL"].endswith(
            "/centralino_" + service.replace("-", "_")
        )
    assert {"5060:5060/udp", "5060:5060/tcp"} <= set(compose["registrar"]["ports"])


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert "uv sync --frozen --no-dev" in text
