"""deploy/k8s: rendered by `kubectl kustomize`, validated offline against the Kubernetes API schemas, and
checked against the server: probes on paths the real app answers, env the settings read, a grace period
that covers the drain, and a KEDA trigger on a metric the server exports.
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from tests.support.deploy import (
    ROOT,
    exported_series,
    require_tool,
    run,
    settings_from_env,
    shutdown_bound_s,
    unknown_env,
)

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="the dev extra installs kubernetes-validate")
promql = pytest.importorskip("promql_parser", reason="the dev extra installs promql-parser")

BASE = "deploy/k8s/base"
CPU = "deploy/k8s/overlays/cpu"
LAYOUTS = (BASE, CPU)
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}
DRAIN_MARGIN_S = 10.0

# The part of KEDA's ScaledObject CRD (keda.sh/v1alpha1) these manifests use, as its OpenAPI schema types it:
# unknown fields are errors, and trigger metadata is a map of strings (a bare number is rejected by the API).
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_TRIGGER_REQUIRED = {"serverAddress", "query", "threshold"}


@functools.cache
def rendered(layout: str) -> tuple[dict[str, Any], ...]:
    kubectl = require_tool("kubectl", installed_by_ci=False, hint="kubectl with kustomize; the machine image has it")
    result = run([kubectl, "kustomize", layout])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def one(layout: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in rendered(layout) if doc["kind"] == kind]
    return found


def server_container(layout: str) -> dict[str, Any]:
    (container,) = one(layout, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


SECRET_ENV = {"SCOTT_API_KEYS"}  # from a Secret, never literal in a manifest


def container_env(layout: str) -> dict[str, str]:
    env = [e for e in server_container(layout)["env"] if e["name"] not in SECRET_ENV]
    assert all("value" in e for e in env), "every other SCOTT_* value must be literal, so it can be checked here"
    return {e["name"]: e["value"] for e in env}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_api_keys_come_from_an_optional_secret(layout: str) -> None:
    (keys,) = [e for e in server_container(layout)["env"] if e["name"] == "SCOTT_API_KEYS"]
    assert "value" not in keys and not unknown_env({keys["name"]: ""})
    ref = keys["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["name"] == "scott-serve-api-keys" and ref["key"] == "keys"


# -- schemas -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_objects_validate_against_the_kubernetes_schemas(layout: str) -> None:
    version = kubernetes_validate.utils.latest_version()
    kinds = []
    for doc in rendered(layout):
        kinds.append(doc["kind"])
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises, naming the field
    assert {"Deployment", "Service", "PodDisruptionBudget", "ScaledObject", "Namespace"} <= set(kinds)


def test_schema_validation_catches_a_bad_field() -> None:
    """The validation above is real: a misspelt or mistyped field fails it."""
    version = kubernetes_validate.utils.latest_version()
    deployment = copy.deepcopy(one(BASE, "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "75"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_scaled_object_is_a_valid_keda_object(layout: str) -> None:
    scaled = one(layout, "ScaledObject")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    # The HPA KEDA creates carries this behavior: validate it as part of an autoscaling/v2 HPA.
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-scott-serve"},
        "spec": {
            "scaleTargetRef": scaled["spec"]["scaleTargetRef"],
            "maxReplicas": scaled["spec"]["maxReplicaCount"],
            "behavior": behavior,
        },
    }
    kubernetes_validate.validate(hpa, kubernetes_validate.utils.latest_version(), strict=True)
    bad = copy.deepcopy(scaled)
    bad["spec"]["triggers"][0]["metadata"]["threshold"] = 8
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCALED_OBJECT_SCHEMA)


# -- wiring ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_scaled_object_targets_the_deployment_on_exported_queue_depth(layout: str, live_server) -> None:
    scaled, deployment = one(layout, "ScaledObject"), one(layout, "Deployment")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment"), target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and set(trigger["metadata"]) >= PROMETHEUS_TRIGGER_REQUIRED
    query = promql.parse(trigger["metadata"]["query"])
    assert isinstance(query, promql.AggregateExpr) and str(query.op) == "sum", "one number over all pods"
    selector = query.expr
    assert isinstance(selector, promql.VectorSelector) and selector.name == "scott_queue_depth"
    assert selector.name in exported_series(live_server.url)
    matchers = {m.name: m.value for m in selector.matchers.matchers}
    assert matchers == {"namespace": deployment["metadata"]["namespace"]}, "the query must follow the namespace"
    assert float(trigger["metadata"]["threshold"]) > 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_service_and_budget_select_the_pods(layout: str) -> None:
    deployment = one(layout, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": one(layout, "Service")["spec"]["selector"],
        "PodDisruptionBudget": one(layout, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selector and selector.items() <= pod_labels.items(), f"the {kind} does not select the pods"
    port_names = {p["name"] for p in server_container(layout)["ports"]}
    assert {p["targetPort"] for p in one(layout, "Service")["spec"]["ports"]} <= port_names
    assert "replicas" not in deployment["spec"], "KEDA's HPA owns the replica count"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_environment_is_read_by_the_server(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = container_env(layout)
    assert not unknown_env(env), f"no setting reads {unknown_env(env)} (see server/settings.py)"
    settings = settings_from_env(env, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert {p["containerPort"] for p in server_container(layout)["ports"]} == {settings.port}
    assert settings.backend == ("tensorrt" if layout == BASE else "openvino")
    mounts = {m["mountPath"] for m in server_container(layout)["volumeMounts"]}
    assert env["SCOTT_CACHE_DIR"] in mounts


def test_gpu_pods_take_one_gpu_and_cpu_pods_none() -> None:
    assert server_container(BASE)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in yaml.safe_dump(list(rendered(CPU)))
    assert server_container(CPU)["image"].endswith("-cpu")
    assert not any(doc["kind"] == "PersistentVolumeClaim" for doc in rendered(CPU))


def test_images_match_the_compose_images() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    compose_cpu = yaml.safe_load((ROOT / "docker-compose.cpu.yml").read_text())
    assert server_container(BASE)["image"] == compose["services"]["server"]["image"]
    assert server_container(CPU)["image"] == compose_cpu["services"]["server-cpu"]["image"]


def test_pods_run_as_the_image_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uids = set(re.findall(r"^USER\s+(\d+)", dockerfile, flags=re.MULTILINE))
    pod = one(BASE, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert uids == {str(pod["securityContext"]["runAsUser"])}


# -- probes and shutdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_probes_hit_paths_the_server_answers(layout: str, live_server) -> None:
    container = server_container(layout)
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["startupProbe"]["path"] == "/readyz", "startup covers load, engine build and warm-up"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz", "liveness must not fail while the model is still loading"
    port_names = {p["name"] for p in container["ports"]}
    for kind, probe in probes.items():
        assert probe["port"] in port_names, kind
        assert httpx.get(live_server.url + probe["path"], timeout=10).status_code == 200, kind
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= (1200 if layout == BASE else 120), "a first start on a GPU builds TensorRT engines"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_grace_period_covers_pre_stop_and_drain(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    container = server_container(layout)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pre_stop = float(command[1])
    assert pre_stop >= 5, "endpoints need a few seconds to drop the pod before the server stops taking requests"
    settings = settings_from_env(container_env(layout), monkeypatch)
    grace = one(layout, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    needed = pre_stop + shutdown_bound_s(settings) + DRAIN_MARGIN_S
    assert grace >= needed, f"terminationGracePeriodSeconds {grace} < preStop + drain bound + margin = {needed}"
