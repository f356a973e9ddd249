"""docker-compose.yml (GPU) and docker-compose.cpu.yml (CPU override), as a compose CLI renders them.

`compose config` validates the files against the compose schema, interpolates variables and merges the
override, all without a Docker engine; the tests then check what `up` would start against the server's
code: its settings, port, shutdown timing, and the Prometheus/Grafana files the stack mounts.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import (
    ROOT,
    UNPINNED_TAGS,
    compose_cli,
    image_tag,
    parse_duration_s,
    settings_from_env,
    shutdown_bound_s,
    unknown_env,
)

GPU = ("docker-compose.yml",)
CPU = ("docker-compose.yml", "docker-compose.cpu.yml")
STACKS = {"gpu": GPU, "cpu": CPU}
CACHE_DIR = "/var/cache/scott"
DRAIN_MARGIN_S = 10.0  # the last batch, PNG encoding and process exit, after the bound of the drain


@functools.cache
def rendered(files: tuple[str, ...]) -> dict[str, Any]:
    """`compose -f ... config` with a clean environment, so the defaults of every ${VAR:-default} show."""
    argv = [*compose_cli(), *(arg for f in files for arg in ("-f", f)), "config"]
    result = _run_clean(argv)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def _run_clean(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def active(files: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The services plain `up` starts: those without a profile."""
    return {name: svc for name, svc in rendered(files)["services"].items() if not svc.get("profiles")}


def server_of(files: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """The one started service that runs our image."""
    servers = {n: s for n, s in active(files).items() if s.get("image", "").startswith("scott-serve:")}
    assert len(servers) == 1, f"expected one scott-serve service to start, got {sorted(servers)}"
    return next(iter(servers.items()))


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source, read_only), from compose v1's short or v2's long volume syntax."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        else:
            source, target, read_only = volume.get("source", ""), volume["target"], bool(volume.get("read_only"))
        out[target] = (source, read_only)
    return out


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        ports.add(int(port["target"]) if isinstance(port, dict) else int(str(port).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def dockerfile_stages() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE))


# -- validity --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_compose_config_renders(stack: str) -> None:
    config = rendered(STACKS[stack])
    assert {"prometheus", "grafana"} <= set(active(STACKS[stack]))
    assert config["services"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_image_is_pinned(stack: str) -> None:
    for name, service in rendered(STACKS[stack])["services"].items():
        assert "image" in service, f"{name} has no image (a pinned tag, or our own build's)"
        assert image_tag(service["image"]) not in UNPINNED_TAGS, f"{name}: {service['image']} is not pinned"


@pytest.mark.parametrize("stack", STACKS)
def test_builds_name_dockerfile_stages(stack: str) -> None:
    stages = dockerfile_stages()
    for name, service in active(STACKS[stack]).items():
        if "build" in service:
            assert service["build"].get("target") in stages, f"{name} builds a target the Dockerfile lacks"


# -- the server ------------------------------------------------------------------------------------------


def test_gpu_server_reserves_one_nvidia_gpu() -> None:
    name, server = server_of(GPU)
    assert name == "server"
    devices = server["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "capabilities": ["gpu"], "count": 1}]
    assert server["build"]["target"] == "gpu"
    assert server["environment"]["SCOTT_BACKEND"] == "tensorrt"


def test_cpu_override_replaces_the_gpu_server() -> None:
    everything = rendered(CPU)["services"]
    assert everything["server"]["profiles"] == ["gpu"], "the GPU server must stay off on a CPU host"
    name, server = server_of(CPU)
    assert name == "server-cpu"
    assert "deploy" not in server or not server["deploy"].get("resources", {}).get("reservations")
    assert server["build"]["target"] == "cpu"
    assert server["environment"]["SCOTT_BACKEND"] == "openvino"  # the CPU default (engines.default_backend)
    assert server["environment"]["SCOTT_DEVICE"] == "cpu"
    # Prometheus scrapes `server`: the CPU server must answer to that name.
    assert "server" in server["networks"]["default"]["aliases"]


@pytest.mark.parametrize("stack", STACKS)
def test_server_environment_is_read_by_the_server(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, server = server_of(STACKS[stack])
    env = server["environment"]
    assert not unknown_env(env), f"no setting reads {unknown_env(env)} (see server/settings.py)"
    settings = settings_from_env(env, monkeypatch)  # raises if a value does not validate
    assert env["SCOTT_CACHE_DIR"] == CACHE_DIR
    assert settings.port in container_ports(server), "the published port must be the one the server listens on"
    # API keys come from the host's environment (never from the file); unset, the server has none.
    assert env["SCOTT_API_KEYS"] == "" and settings.api_key_values() == ()


@pytest.mark.parametrize("stack", STACKS)
def test_volumes_hold_models_and_engine_cache(stack: str) -> None:
    config = rendered(STACKS[stack])
    _, server = server_of(STACKS[stack])
    volumes = mounts(server)
    source, _ = volumes[CACHE_DIR]
    assert source in config["volumes"], "the engine cache must be a named volume, kept across restarts"
    source, read_only = volumes["/models"]
    assert Path(source).resolve() == (ROOT / "models").resolve() and read_only


@pytest.mark.parametrize("stack", STACKS)
def test_server_healthcheck_probes_readiness(stack: str) -> None:
    _, server = server_of(STACKS[stack])
    test = server["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "/opt/scott/healthcheck.py"] and test[3] == "/readyz"
    assert parse_duration_s(server["healthcheck"]["start_period"]) >= 60


@pytest.mark.parametrize("stack", STACKS)
def test_stop_grace_period_covers_the_drain(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, server = server_of(STACKS[stack])
    settings = settings_from_env(server["environment"], monkeypatch)
    grace = parse_duration_s(server["stop_grace_period"])
    needed = shutdown_bound_s(settings) + DRAIN_MARGIN_S
    assert grace >= needed, f"stop_grace_period {grace}s < drain bound + margin = {needed}s: SIGKILL mid-drain"


# -- Prometheus and Grafana ------------------------------------------------------------------------------


def prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())


@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_scrapes_the_server(stack: str, monkeypatch: pytest.MonkeyPatch) -> None:
    files = STACKS[stack]
    _, server = server_of(files)
    jobs = {job["job_name"]: job for job in prometheus_config()["scrape_configs"]}
    job = jobs["scott-serve"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    port = settings_from_env(server["environment"], monkeypatch).port
    assert targets == [f"server:{port}"]
    prometheus = active(files)["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    source, read_only = mounts(prometheus)[config_flag.split("=", 1)[1]]
    assert Path(source).resolve() == (ROOT / "deploy/prometheus/prometheus.yml").resolve() and read_only
    assert prometheus["healthcheck"]["test"][0] == "CMD"


def test_grafana_provisioning_matches_the_stack() -> None:
    services = active(GPU)
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    volumes = mounts(grafana)
    source, _ = volumes["/etc/grafana/provisioning"]
    provisioning = Path(source)
    assert provisioning.resolve() == (ROOT / "deploy/grafana/provisioning").resolve()

    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    (prometheus_ds,) = [d for d in datasources if d["type"] == "prometheus"]
    assert prometheus_ds["url"] == f"http://prometheus:{min(container_ports(services['prometheus']))}"

    (provider,) = yaml.safe_load((provisioning / "dashboards/scott-serve.yml").read_text())["providers"]
    dashboards_dir = provider["options"]["path"]
    source, read_only = volumes[dashboards_dir]
    assert Path(source).resolve() == (ROOT / "deploy/grafana/dashboards").resolve() and read_only
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == dashboards_dir and (Path(source) / Path(home).name).is_file()

    dashboard = yaml.safe_load((Path(source) / Path(home).name).read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]} | {
        t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]
    }
    assert uids == {prometheus_ds["uid"]}, "every panel must use the provisioned datasource"
