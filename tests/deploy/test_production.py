"""Production and scale (issue 11), shown on the rendered chart: the drain timeline, probes,
rollout safety, the fleet topology, secrets under GitOps, memory sizing, multi-GPU and pinned
images."""

from __future__ import annotations

import hashlib

import helm_python as helm
import pytest

from .helpers import (
    CHART_DIR,
    MONITORING_APIS,
    REPO,
    Obj,
    container,
    env_map,
    labels_match,
    load_yaml,
    pod_spec,
    render,
)

FLEET = load_yaml(CHART_DIR / "ci" / "fleet-values.yaml")


def _pre_stop(c: Obj) -> list[str]:
    command: list[str] = c["lifecycle"]["preStop"]["exec"]["command"]
    return command


def _arg(c: Obj, flag: str) -> str | None:
    args = c["args"]
    return str(args[args.index(flag) + 1]) if flag in args else None


def _grace(deploy: Obj) -> int:
    value: int = pod_spec(deploy)["terminationGracePeriodSeconds"]
    return value


# --- 1. drain that drops nothing ------------------------------------------------------------


def test_default_drain_timeline() -> None:
    """t=0 the pod is deleted and leaves the endpoints; both containers keep serving through
    preStop; the sidecar gets SIGTERM at 10 s, serves new work 5 s more, then finishes in-flight
    work within 30 s; vLLM takes work until 15 s, then drains for up to 30 s; grace 55 s."""
    deploy = render().one("Deployment")
    sidecar, vllm = container(deploy, "sidecar"), container(deploy, "vllm")
    assert _pre_stop(sidecar) == ["sleep", "10"]
    env = env_map(sidecar)
    assert (env["RERANK_DRAIN_DELAY_S"], env["RERANK_SHUTDOWN_TIMEOUT_S"]) == ("5", "30")
    assert _pre_stop(vllm) == ["sleep", "15"]
    assert _arg(vllm, "--shutdown-timeout") == "30"
    assert _grace(deploy) == 55


def test_drain_timeline_follows_the_settings() -> None:
    values = {
        "drain": {"endpointPropagationSeconds": 20},
        "sidecar": {"config": {"drainDelayS": 2.5, "shutdownTimeoutS": 60}},
    }
    deploy = render(values).one("Deployment")
    assert _pre_stop(container(deploy, "sidecar")) == ["sleep", "20"]
    # Whole seconds, rounded up: vLLM outlasts the sidecar's drain delay.
    assert _pre_stop(container(deploy, "vllm")) == ["sleep", "23"]
    assert _arg(container(deploy, "vllm"), "--shutdown-timeout") == "60"
    assert _grace(deploy) == 20 + 3 + 60 + 10


def test_a_grace_period_shorter_than_the_drain_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="shorter than the drain"):
        render({"terminationGracePeriodSeconds": 30})
    assert _grace(render({"terminationGracePeriodSeconds": 120}).one("Deployment")) == 120


def test_lifecycle_values_replace_the_derived_pre_stop() -> None:
    hook = {"preStop": {"httpGet": {"path": "/drain", "port": "http"}}}
    deploy = render({"sidecar": {"lifecycle": hook}}).one("Deployment")
    assert container(deploy, "sidecar")["lifecycle"] == hook
    assert _pre_stop(container(deploy, "vllm")) == ["sleep", "15"]
    with pytest.raises(helm.HelmValuesError, match="lifecycle"):
        render({"vllm": {"lifecycle": {"preStp": {}}}})


def test_fleet_vllm_drains_after_the_sidecars_rediscover() -> None:
    """A fleet vLLM pod leaves the headless Service's answer at once; sidecars re-resolve within
    the discovery interval (10 s) plus the DNS TTL (5 s); a batch lives one request deadline."""
    vllm_deploy = render(FLEET).one("Deployment", "vllm")
    vllm = container(vllm_deploy, "vllm")
    assert _pre_stop(vllm) == ["sleep", str(10 + 10 + 5)]
    assert _arg(vllm, "--shutdown-timeout") == "30"
    assert _grace(vllm_deploy) == 25 + 30 + 10
    assert _grace(render(FLEET).one("Deployment")) == 10 + 5 + 30 + 10


# --- 2. cheap readiness, deep startup -------------------------------------------------------


def test_readiness_is_cheap_and_the_deep_check_is_startup_only() -> None:
    sidecar = container(render().one("Deployment"), "sidecar")
    ready, startup = sidecar["readinessProbe"], sidecar["startupProbe"]
    assert ready["httpGet"]["path"] == "/readyz" and ready["timeoutSeconds"] <= 2
    assert startup["httpGet"]["path"] == "/readyz"
    # Covers vLLM's own startup budget: the sidecar is ready only once vLLM scores.
    vllm_startup = container(render().one("Deployment"), "vllm")["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= vllm_startup["periodSeconds"] * vllm_startup["failureThreshold"]
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"


# --- 3. rollout safety ----------------------------------------------------------------------


def test_progress_deadline_covers_a_cold_start() -> None:
    deploy = render().one("Deployment")
    budget = max(
        c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
        for c in pod_spec(deploy)["containers"]
    )
    assert deploy["spec"]["progressDeadlineSeconds"] == budget + 600 == 2400
    with pytest.raises(helm.HelmRenderError, match="progressDeadlineSeconds"):
        render({"progressDeadlineSeconds": 600})
    assert (
        render({"progressDeadlineSeconds": 3600}).one("Deployment")["spec"][
            "progressDeadlineSeconds"
        ]
        == 3600
    )


def test_pod_templates_carry_no_version_labels() -> None:
    """A chart bump alone must not restart every GPU pod."""
    out = render({**FLEET, "commonLabels": {"team": "search"}, "podLabels": {"tier": "ml"}})
    for deploy in out.maybe("Deployment"):
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels
        assert labels["team"] == "search" and labels["tier"] == "ml"
        assert "helm.sh/chart" in deploy["metadata"]["labels"]


def test_setup_hook_is_kept_briefly_and_notes_give_the_install_timeout() -> None:
    out = render(load_yaml(CHART_DIR / "ci" / "setup-values.yaml"))
    assert out.one("Job", "setup")["spec"]["ttlSecondsAfterFinished"] == 86400
    # sidecarWaitSeconds 1800 + waitTimeoutSeconds 120 + 300: above Helm's 5-minute default.
    assert "--timeout 2220s" in out.notes
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert "--timeout" in docs


# --- 4. autoscaling signals and scraping ----------------------------------------------------


def test_vllm_metrics_are_scraped_through_a_pod_monitor() -> None:
    values = load_yaml(CHART_DIR / "ci" / "servicemonitor-values.yaml")
    assert render(values).maybe("PodMonitor") == []  # no CRD, nothing rendered
    out = render(values, api_versions=MONITORING_APIS)
    monitor = out.one("PodMonitor", "vllm")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "vllm-http"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_labels = out.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels_match(monitor["spec"]["selector"]["matchLabels"], pod_labels)


# --- 5. the fleet topology ------------------------------------------------------------------


def test_fleet_sidecars_on_cpu_in_front_of_a_headless_vllm_deployment() -> None:
    out = render(FLEET, api_versions=MONITORING_APIS)
    sidecar_deploy, vllm_deploy = out.one("Deployment"), out.one("Deployment", "vllm")
    assert [c["name"] for c in pod_spec(sidecar_deploy)["containers"]] == ["sidecar"]
    assert "nvidia.com/gpu" not in str(pod_spec(sidecar_deploy))
    assert container(vllm_deploy, "vllm")["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = env_map(container(sidecar_deploy, "sidecar"))
    assert env["RERANK_VLLM_URL"] == "dns+http://rerank-sidecar-vllm.search.svc:8000"
    assert env["RERANK_VLLM_DISCOVERY_INTERVAL_S"] == "10"
    assert env["RERANK_VLLM_KEEPALIVE_S"] == "30"
    headless = out.one("Service", "vllm")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["ports"][0]["port"] == 8000
    assert headless["metadata"]["name"] == "rerank-sidecar-vllm"
    sidecar_pods = sidecar_deploy["spec"]["template"]["metadata"]["labels"]
    vllm_pods = vllm_deploy["spec"]["template"]["metadata"]["labels"]
    assert labels_match(headless["spec"]["selector"], vllm_pods)
    # Neither Deployment (nor the sidecar's Service) adopts or selects the other's pods.
    assert not labels_match(sidecar_deploy["spec"]["selector"]["matchLabels"], vllm_pods)
    assert not labels_match(vllm_deploy["spec"]["selector"]["matchLabels"], sidecar_pods)
    assert not labels_match(out.one("Service")["spec"]["selector"], vllm_pods)
    # Each scaled on its own signal.
    sidecar_hpa = out.one("HorizontalPodAutoscaler")
    names = {
        m["pods"]["metric"]["name"] if m["type"] == "Pods" else m["resource"]["name"]
        for m in sidecar_hpa["spec"]["metrics"]
    }
    assert names == {"cpu", "rerank_queue_pairs"}
    vllm_hpa = out.one("HorizontalPodAutoscaler", "vllm")
    assert vllm_hpa["spec"]["scaleTargetRef"]["name"] == "rerank-sidecar-vllm"
    assert vllm_hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm:num_requests_waiting"
    assert vllm_hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 600
    assert "replicas" not in vllm_deploy["spec"] and "replicas" not in sidecar_deploy["spec"]
    # vLLM (no authentication) takes calls from this release's sidecars and Prometheus only.
    policy = out.one("NetworkPolicy", "vllm")
    assert labels_match(policy["spec"]["podSelector"]["matchLabels"], vllm_pods)
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "vllm-http", "protocol": "TCP"}]
    assert labels_match(rule["from"][0]["podSelector"]["matchLabels"], sidecar_pods)
    assert rule["from"][1]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
    }
    assert out.one("PodDisruptionBudget", "vllm")["spec"]["maxUnavailable"] == 1
    monitor = out.one("PodMonitor", "vllm")
    assert labels_match(monitor["spec"]["selector"]["matchLabels"], vllm_pods)


def test_fleet_keda_scales_both_deployments() -> None:
    out = render({**FLEET, "autoscaling": {**FLEET["autoscaling"], "keda": {"enabled": True}}})
    assert out.maybe("HorizontalPodAutoscaler") == []
    vllm = out.one("ScaledObject", "vllm")
    (trigger,) = vllm["spec"]["triggers"]
    assert trigger["metadata"]["query"].startswith("sum(vllm:num_requests_waiting{")
    sidecar_triggers = {t["type"] for t in out.one("ScaledObject")["spec"]["triggers"]}
    assert sidecar_triggers == {"prometheus", "cpu"}


def test_single_pod_and_router_values() -> None:
    single = render().one("Deployment")
    assert env_map(container(single, "sidecar"))["RERANK_VLLM_URL"] == "http://127.0.0.1:8000"
    router = render(load_yaml(CHART_DIR / "ci" / "router-values.yaml")).one("Deployment")
    env = env_map(container(router, "sidecar"))
    assert env["RERANK_VLLM_URL"] == "http://vllm-router-service.vllm.svc:80"
    assert env["RERANK_VLLM_KEEPALIVE_S"] == "30"
    assert "RERANK_VLLM_DISCOVERY_INTERVAL_S" not in env


# --- 6. secrets under GitOps ----------------------------------------------------------------


def test_token_checksum_rolls_the_pods_and_matches_the_secret() -> None:
    out = render()
    stored = out.one("Secret")["data"]["api-token"]
    annotations = out.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/api-token"] == hashlib.sha256(stored.encode()).hexdigest()
    # Another token (a rotated Secret, or a GitOps render without lookup) gives another checksum.
    again = render().one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert again["checksum/api-token"] != annotations["checksum/api-token"]
    # An existing Secret is not readable offline: no annotation, the Secret is only referenced.
    existing = render({"auth": {"existingSecret": "my-token"}}).one("Deployment")
    assert "checksum/api-token" not in existing["spec"]["template"]["metadata"]["annotations"]


def test_setup_job_reads_the_token_the_sidecar_reads() -> None:
    """The GitOps way: one existing Secret, read by the sidecar and by the setup Job."""
    values = load_yaml(CHART_DIR / "ci" / "setup-values.yaml")
    values["auth"] = {"existingSecret": "rerank-token", "existingSecretKey": "token"}
    out = render(values)
    assert out.maybe("Secret") == []
    sidecar = env_map(container(out.one("Deployment"), "sidecar"))["RERANK_API_TOKEN"]
    setup = env_map(container(out.one("Job", "setup"), "setup"))["RERANK_SIDECAR_TOKEN"]
    assert sidecar == setup == {"secretKeyRef": {"name": "rerank-token", "key": "token"}}


# --- 7. memory that fits the bound ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "length", "expected"),
    [
        (4096, 8192, "896Mi"),  # 768 + 4096 x 8192 x 4 B = 768 + 128 MiB
        (4096, 2048, "800Mi"),  # cpu-dev: + 32 MiB
        (16384, 8192, "1280Mi"),  # fleet: + 512 MiB
        (1000, 1000, "772Mi"),  # 4,000,000 B rounds up to 4 MiB
    ],
)
def test_sidecar_memory_is_derived_from_the_queue_bound(
    pairs: int, length: int, expected: str
) -> None:
    values = {
        "sidecar": {"config": {"maxQueuePairs": pairs, "maxLength": length}},
        "vllm": {"maxModelLen": max(length, 8192)},
    }
    res = container(render(values).one("Deployment"), "sidecar")["resources"]
    assert res["requests"]["memory"] == res["limits"]["memory"] == expected
    assert res["requests"]["cpu"] == "500m"


def test_explicit_sidecar_memory_wins() -> None:
    values = {"sidecar": {"resources": {"limits": {"memory": "3Gi"}}}}
    res = container(render(values).one("Deployment"), "sidecar")["resources"]
    assert res["limits"]["memory"] == "3Gi" and res["requests"]["memory"] == "896Mi"


# --- 8. multi-GPU ---------------------------------------------------------------------------


def _shm(deploy: Obj) -> str:
    (shm,) = [v for v in pod_spec(deploy)["volumes"] if v["name"] == "shm"]
    size: str = shm["emptyDir"]["sizeLimit"]
    return size


def test_several_gpus_shard_the_model_with_shared_memory_for_it() -> None:
    deploy = render(load_yaml(CHART_DIR / "ci" / "tensor-parallel-values.yaml")).one("Deployment")
    assert _arg(container(deploy, "vllm"), "--tensor-parallel-size") == "2"
    assert container(deploy, "vllm")["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert _shm(deploy) == "8Gi"
    one = render().one("Deployment")
    assert _arg(container(one, "vllm"), "--tensor-parallel-size") is None
    assert _shm(one) == "2Gi"
    assert _shm(render({"vllm": {"gpu": 4, "shmSize": "20Gi"}}).one("Deployment")) == "20Gi"


# --- 9. reproducible ------------------------------------------------------------------------


def test_vllm_image_can_be_pinned_by_digest() -> None:
    digest = "sha256:" + "ab" * 32
    vllm = container(render({"vllm": {"image": {"digest": digest}}}).one("Deployment"), "vllm")
    assert vllm["image"] == f"vllm/vllm-openai@{digest}"
    with pytest.raises(helm.HelmValuesError, match="digest"):
        render({"vllm": {"image": {"digest": "latest"}}})


def test_default_vllm_tag_states_the_version_it_was_checked_against() -> None:
    text = (CHART_DIR / "values.yaml").read_text()
    tag = load_yaml(CHART_DIR / "values.yaml")["vllm"]["image"]["tag"]
    assert f"Checked against vLLM {tag.lstrip('v')}" in text
