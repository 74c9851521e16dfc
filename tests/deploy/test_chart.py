"""The Helm chart renders (offline, helm-python-sdk) for every documented combination and does
what its values say."""

from __future__ import annotations

import base64
import json
from typing import Any

import helm_python as helm
import pytest

from .helpers import (
    AXES,
    CHART_DIR,
    COMBINATIONS,
    MONITORING_APIS,
    Obj,
    ci_values_files,
    combination_values,
    container,
    deep_merge,
    env_map,
    labels_match,
    load_yaml,
    pod_spec,
    render,
    validated_versions,
)


def _id(combo: tuple[str, ...]) -> str:
    return "+".join(combo) or "default"


def test_lint_is_clean_for_every_claimed_version() -> None:
    for version in (validated_versions()[0], validated_versions()[-1]):
        report = helm.lint(CHART_DIR, strict=True, kube_version=f"v{version}")
        assert report["errors"] == [], report
        # Severity 2 = warning, 3 = error; info (e.g. "icon is recommended") is accepted.
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("path", ci_values_files(), ids=lambda p: p.name)
def test_lint_is_clean_for_each_values_file(path: Any) -> None:
    report = helm.lint(CHART_DIR, load_yaml(path), strict=True)
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_lint_reports_values_that_break_the_schema() -> None:
    report = helm.lint(CHART_DIR, {"replicaCount": "two"}, strict=True)
    assert report["errors"], report


def test_default_render_objects() -> None:
    out = render()
    assert out.kinds() == sorted(
        [
            "Deployment",
            "NetworkPolicy",
            "Pod",  # helm test
            "PodDisruptionBudget",
            "Secret",
            "Service",
            "ServiceAccount",
        ]
    )
    deploy = out.one("Deployment")
    assert [c["name"] for c in pod_spec(deploy)["containers"]] == ["sidecar", "vllm"]
    assert deploy["spec"]["replicas"] == 1


@pytest.mark.parametrize("combo", COMBINATIONS, ids=_id)
def test_every_combination_renders(combo: tuple[str, ...]) -> None:
    out = render(combination_values(combo), api_versions=MONITORING_APIS)
    kinds = out.kinds()
    deploy = out.one("Deployment")
    names = [c["name"] for c in pod_spec(deploy)["containers"]]
    assert names == (["sidecar"] if "external" in combo else ["sidecar", "vllm"])
    assert ("HorizontalPodAutoscaler" in kinds) == ("hpa" in combo)
    assert ("replicas" in deploy["spec"]) == ("hpa" not in combo)
    assert ("ServiceMonitor" in kinds) == ("servicemonitor" in combo)
    assert kinds.count("Job") == (2 if "setup" in combo else 0)
    assert {"Service", "NetworkPolicy", "PodDisruptionBudget", "Secret"} <= set(kinds)


@pytest.mark.parametrize("path", ci_values_files(), ids=lambda p: p.name)
def test_ci_values_files_render(path: Any) -> None:
    # render() applies values.schema.json: a file that breaks it raises here.
    out = render(load_yaml(path), api_versions=MONITORING_APIS)
    assert out.one("Deployment")["kind"] == "Deployment"


def test_external_mode_joins_urls_and_has_no_vllm() -> None:
    urls = ["http://vllm-a.ml.svc:8000", "http://vllm-b.ml.svc:8000"]
    out = render({"vllm": {"mode": "external", "external": {"urls": urls}}})
    deploy = out.one("Deployment")
    sidecar = container(deploy, "sidecar")
    assert env_map(sidecar)["RERANK_VLLM_URL"] == ",".join(urls)
    spec = pod_spec(deploy)
    assert spec is not None
    assert not any("nvidia.com/gpu" in str(t) for t in spec.get("tolerations", []))
    assert "PersistentVolumeClaim" not in out.kinds()


def test_pod_mode_talks_over_localhost_to_the_vllm_port() -> None:
    out = render({"vllm": {"port": 8123}})
    deploy = out.one("Deployment")
    assert env_map(container(deploy, "sidecar"))["RERANK_VLLM_URL"] == "http://127.0.0.1:8123"
    vllm = container(deploy, "vllm")
    assert vllm["ports"][0]["containerPort"] == 8123
    assert vllm["args"][vllm["args"].index("--port") + 1] == "8123"
    service = out.one("Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize(
    ("model", "gpus"), [("Qwen/Qwen3-Reranker-4B", 1), ("Qwen/Qwen3-Reranker-8B", 2)]
)
def test_model_and_gpus_come_from_values(model: str, gpus: int) -> None:
    out = render({"vllm": {"model": model, "gpu": gpus, "servedModelName": "reranker"}})
    deploy = out.one("Deployment")
    vllm = container(deploy, "vllm")
    assert vllm["args"][0] == model
    assert vllm["args"][vllm["args"].index("--served-model-name") + 1] == "reranker"
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == gpus
    env = env_map(container(deploy, "sidecar"))
    assert env["RERANK_MODEL"] == model
    assert env["RERANK_SERVED_MODEL_NAME"] == "reranker"


def test_cpu_vllm_has_no_gpu_resource_or_toleration() -> None:
    out = render(load_yaml(CHART_DIR / "ci" / "cpu-dev-values.yaml"))
    deploy = out.one("Deployment")
    assert "nvidia.com/gpu" not in json.dumps(container(deploy, "vllm")["resources"])
    assert "tolerations" not in pod_spec(deploy)


def test_gpu_node_selection_applies_in_pod_mode_only() -> None:
    values = {"vllm": {"nodeSelector": {"gpu": "l4"}}, "nodeSelector": {"zone": "a"}}
    pod = pod_spec(render(values).one("Deployment"))
    assert pod is not None and pod["nodeSelector"] == {"gpu": "l4", "zone": "a"}
    external = deep_merge(values, AXES["external"])
    pod = pod_spec(render(external).one("Deployment"))
    assert pod is not None and pod["nodeSelector"] == {"zone": "a"}


RECREATE = {"updateStrategy": {"type": "Recreate"}}


def test_weight_cache_pvc() -> None:
    cache = {"type": "pvc", "size": "60Gi", "storageClass": "fast"}
    out = render({"vllm": {"cache": cache}, **RECREATE})
    pvc = out.one("PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "60Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    volumes = {v["name"]: v for v in pod_spec(out.one("Deployment"))["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_existing_claim_is_used_without_creating_one() -> None:
    out = render({"vllm": {"cache": {"type": "pvc", "existingClaim": "weights"}}, **RECREATE})
    assert out.maybe("PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod_spec(out.one("Deployment"))["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "weights"


def test_read_write_once_cache_refuses_several_replicas() -> None:
    with pytest.raises(helm.HelmRenderError, match="ReadWriteOnce"):
        render({"vllm": {"cache": {"type": "pvc"}}, "autoscaling": {"enabled": True}})
    with pytest.raises(helm.HelmRenderError, match="ReadWriteOnce"):
        render({"vllm": {"cache": {"type": "pvc"}}, "replicaCount": 2, **RECREATE})
    keda = {"autoscaling": {"keda": {"enabled": True}}}
    with pytest.raises(helm.HelmRenderError, match="ReadWriteOnce"):
        render({"vllm": {"cache": {"type": "pvc"}}, **keda, **RECREATE})


def test_read_write_once_cache_refuses_a_surge_and_names_the_fixes() -> None:
    """The surge pod of a rolling update cannot attach the volume: the upgrade would hang."""
    with pytest.raises(helm.HelmRenderError) as caught:
        render({"vllm": {"cache": {"type": "pvc"}}})
    message = str(caught.value)
    assert "surge" in message
    for fix in ("updateStrategy.type=Recreate", "ReadWriteMany", "emptyDir"):
        assert fix in message
    no_surge = {"updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}}
    assert render({"vllm": {"cache": {"type": "pvc"}}, **no_surge}).one("Deployment")
    rwx = {"type": "pvc", "accessModes": ["ReadWriteMany"]}
    assert render({"vllm": {"cache": rwx}}).one("Deployment")
    fleet = {"vllm": {"mode": "fleet", "cache": {"type": "pvc"}}}
    with pytest.raises(helm.HelmRenderError, match="ReadWriteOnce"):
        render(fleet)


def test_max_model_len_must_cover_the_sidecar_max_length() -> None:
    with pytest.raises(helm.HelmRenderError, match="maxModelLen"):
        render({"vllm": {"maxModelLen": 4096}})
    out = render({"vllm": {"maxModelLen": 4096}, "sidecar": {"config": {"maxLength": 4096}}})
    assert env_map(container(out.one("Deployment"), "sidecar"))["RERANK_MAX_LENGTH"] == "4096"


def test_large_integers_are_not_rendered_in_exponent_form() -> None:
    out = render({"sidecar": {"config": {"maxBodyBytes": 104857600, "maxQueuePairs": 1000000}}})
    env = env_map(container(out.one("Deployment"), "sidecar"))
    assert env["RERANK_MAX_BODY_BYTES"] == "104857600"
    assert env["RERANK_MAX_QUEUE_PAIRS"] == "1000000"


def _metrics(hpa: Obj) -> dict[str, Obj]:
    """HPA metrics by name (cpu for the Resource metric)."""
    out: dict[str, Obj] = {}
    for m in hpa["spec"]["metrics"]:
        key = m["pods"]["metric"]["name"] if m["type"] == "Pods" else m["resource"]["name"]
        out[key] = m
    return out


def test_hpa_scales_gpu_pods_on_the_queues_not_on_cpu() -> None:
    values = load_yaml(CHART_DIR / "ci" / "hpa-values.yaml")
    hpa = render(values).one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rerank-sidecar"
    metrics = _metrics(hpa)
    assert set(metrics) == {"rerank_queue_pairs", "vllm:num_requests_waiting"}
    assert metrics["rerank_queue_pairs"]["pods"]["target"] == {
        "type": "AverageValue",
        "averageValue": "256",
    }
    assert metrics["vllm:num_requests_waiting"]["pods"]["target"]["averageValue"] == "4"
    # Minutes of warm-up: no scale-down flapping, steady scale-up.
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600
    assert behavior["scaleUp"]["policies"][0]["periodSeconds"] >= 60
    # External mode: no vLLM in the pod, so its queue is not this pod's metric; CPU is opt-in.
    external = deep_merge(AXES["external"], {"autoscaling": {"enabled": True}})
    assert set(_metrics(render(external).one("HorizontalPodAutoscaler"))) == {"rerank_queue_pairs"}
    cpu = deep_merge(external, {"autoscaling": {"targetCPUUtilizationPercentage": 70}})
    assert "cpu" in _metrics(render(cpu).one("HorizontalPodAutoscaler"))
    none = {"queue": {"targetAverageValue": ""}, "vllmWaiting": {"targetAverageValue": ""}}
    with pytest.raises(helm.HelmRenderError, match="autoscaling needs a metric"):
        render({"autoscaling": {"enabled": True, **none}})


def test_keda_scaled_object_replaces_the_hpa() -> None:
    out = render(load_yaml(CHART_DIR / "ci" / "keda-values.yaml"))
    assert out.maybe("HorizontalPodAutoscaler") == []
    assert "replicas" not in out.one("Deployment")["spec"]
    scaled = out.one("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"] == {"name": "rerank-sidecar"}
    queries = {
        t["metadata"]["query"]: t["metadata"]["threshold"] for t in scaled["spec"]["triggers"]
    }
    pods = 'namespace="search",pod=~"rerank-sidecar-[a-z0-9]+-[a-z0-9]+"'
    assert queries == {
        f"sum(rerank_queue_pairs{{{pods}}})": "512",
        f"sum(vllm:num_requests_waiting{{{pods}}})": "8",
    }
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900


def test_service_monitor_needs_the_crd() -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}}
    without = render(values)
    assert without.maybe("ServiceMonitor") == []
    assert "no ServiceMonitor CRD" in without.notes
    monitor = render(values, api_versions=MONITORING_APIS).one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    service = render(values).one("Service")
    assert labels_match(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert render(api_versions=MONITORING_APIS).maybe("ServiceMonitor") == []


def _job(out: Any, component: str) -> Obj:
    job: Obj = out.one("Job", component)
    return job


def test_setup_job_runs_the_cli_as_a_post_install_hook() -> None:
    out = render(load_yaml(CHART_DIR / "ci" / "setup-values.yaml"))
    job = _job(out, "setup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    c = container(job, "setup")
    assert c["command"] == ["python", "-m", "es_integration"]
    args = c["args"]
    assert args[:3] == ["opensearch", "setup", "--yes"]
    assert args[args.index("--url") + 1] == "https://opensearch-cluster-master.search.svc:9200"
    assert args[args.index("--sidecar-url") + 1] == "http://rerank-sidecar.search.svc:8080"
    assert args[args.index("--index") + 1] == "docs"
    assert args[args.index("--fields") + 1] == "title,body"
    assert args[args.index("--ca-certs") + 1] == "/etc/rerank-sidecar/ca/ca.crt"
    assert args[args.index("--wait-timeout") + 1] == "120"
    assert "--insecure" not in args
    env = env_map(c)
    assert env["OPENSEARCH_USERNAME"] == {
        "secretKeyRef": {"name": "opensearch-credentials", "key": "username"}
    }
    assert env["OPENSEARCH_PASSWORD"]["secretKeyRef"]["name"] == "opensearch-credentials"
    assert env["RERANK_SIDECAR_TOKEN"]["secretKeyRef"]["name"] == "rerank-sidecar-auth"
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert volumes["ca"]["secret"]["secretName"] == "opensearch-ca"


def test_setup_job_first_waits_for_the_sidecar() -> None:
    values = load_yaml(CHART_DIR / "ci" / "setup-values.yaml")
    values["setup"]["sidecarWaitSeconds"] = 600
    spec = pod_spec(_job(render(values), "setup"))
    assert spec is not None
    (wait,) = spec["initContainers"]
    script, url, seconds = wait["args"]
    compile(script, "wait-for-sidecar", "exec")
    assert (url, seconds) == ("http://rerank-sidecar.search.svc:8080/readyz", "600")
    teardown = pod_spec(_job(render(values), "teardown"))
    assert teardown is not None and "initContainers" not in teardown


def test_setup_job_for_elasticsearch_with_an_api_key() -> None:
    values = {
        "setup": {
            "enabled": True,
            "engine": "elasticsearch",
            "urls": ["https://es:9200", "https://es-2:9200"],
            "existingSecret": "es-creds",
            "usernameKey": "",
            "passwordKey": "",
            "apiKeyKey": "api-key",
            "insecure": True,
        }
    }
    c = container(_job(render(values), "setup"), "setup")
    assert c["args"][:2] == ["elasticsearch", "setup"]
    assert [a for i, a in enumerate(c["args"]) if c["args"][i - 1] == "--url"] == [
        "https://es:9200",
        "https://es-2:9200",
    ]
    assert "--insecure" in c["args"]
    assert set(env_map(c)) == {"ELASTICSEARCH_API_KEY", "RERANK_SIDECAR_TOKEN"}


def test_teardown_is_an_opt_in_pre_delete_hook() -> None:
    values = load_yaml(CHART_DIR / "ci" / "setup-values.yaml")
    job = _job(render(values), "teardown")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert container(job, "teardown")["args"][:3] == ["opensearch", "teardown", "--yes"]
    values["setup"]["teardownOnDelete"] = False
    assert [j for j in render(values).maybe("Job") if "teardown" in j["metadata"]["name"]] == []


def test_helm_test_pod_posts_a_rerank_request() -> None:
    out = render()
    pod = out.one("Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = container(pod, "rerank")
    assert env_map(c)["RERANK_URL"] == "http://rerank-sidecar.search.svc:8080/v1/rerank"
    script = c["args"][0]
    compile(script, "helm-test", "exec")
    assert "Authorization" in script and "results" in script


def test_hook_and_test_pods_are_not_adopted_by_the_deployment() -> None:
    out = render(combination_values(("setup",)))
    selector = out.one("Deployment")["spec"]["selector"]["matchLabels"]
    others = [o for o in out.objects if o["kind"] in {"Job", "Pod"}]
    assert len(others) == 3
    for obj in others:
        labels = (
            obj["spec"]["template"]["metadata"]["labels"]
            if obj["kind"] == "Job"
            else (obj["metadata"]["labels"])
        )
        assert not labels_match(selector, labels), obj["metadata"]["name"]
        assert labels["rerank-sidecar/client"] == "true"  # admitted by the NetworkPolicy


def test_generated_token_is_a_secret_never_shown_in_notes() -> None:
    out = render()
    secret = out.one("Secret")
    token = base64.b64decode(secret["data"]["api-token"]).decode()
    assert len(token) >= 32
    for obj in out.objects:
        if obj is not secret:
            assert token not in json.dumps(obj)
            assert secret["data"]["api-token"] not in json.dumps(obj)
    assert token not in out.notes and secret["data"]["api-token"] not in out.notes
    assert "kubectl -n search get secret rerank-sidecar-auth" in out.notes


def test_existing_token_secret_is_referenced_not_created() -> None:
    out = render({"auth": {"existingSecret": "my-token", "existingSecretKey": "token"}})
    assert out.maybe("Secret") == []
    env = env_map(container(out.one("Deployment"), "sidecar"))
    assert env["RERANK_API_TOKEN"] == {"secretKeyRef": {"name": "my-token", "key": "token"}}


def test_auth_can_be_disabled() -> None:
    out = render({"auth": {"enabled": False}})
    assert out.maybe("Secret") == []
    assert "RERANK_API_TOKEN" not in env_map(container(out.one("Deployment"), "sidecar"))


def test_hf_token_comes_from_a_secret() -> None:
    out = render({"vllm": {"hfToken": {"existingSecret": "hf", "key": "token"}}})
    deploy = out.one("Deployment")
    for name in ("vllm", "sidecar"):
        assert env_map(container(deploy, name))["HF_TOKEN"] == {
            "secretKeyRef": {"name": "hf", "key": "token"}
        }


def test_network_policy_admits_search_cluster_prometheus_and_own_clients_only() -> None:
    values = load_yaml(CHART_DIR / "ci" / "servicemonitor-values.yaml")
    policy = render(values).one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rule, vllm_rule = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "opensearch"}}},
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        },
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": "rerank-sidecar",
                    "rerank-sidecar/client": "true",
                }
            }
        },
    ]
    # vLLM's port (no authentication): Prometheus only, from its configured namespace.
    assert vllm_rule == {
        "ports": [{"port": "vllm-http", "protocol": "TCP"}],
        "from": [rule["from"][1]],
    }
    # An empty namespaceSelector would admit every namespace: it must be left out instead.
    assert "namespaceSelector" not in json.dumps(render().one("NetworkPolicy")["spec"])
    external = render(AXES["external"]).one("NetworkPolicy")
    assert [r["ports"][0]["port"] for r in external["spec"]["ingress"]] == ["http"]


@pytest.mark.parametrize(
    ("engine", "selector"),
    [
        ("opensearch", {"app.kubernetes.io/name": "opensearch"}),
        ("elasticsearch", {"common.k8s.elastic.co/type": "elasticsearch"}),
    ],
)
def test_network_policy_search_cluster_selector_follows_the_engine(
    engine: str, selector: dict[str, str]
) -> None:
    policy = render({"setup": {"engine": engine}}).one("NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"][0] == {"podSelector": {"matchLabels": selector}}
    mine = {"opster.io/opensearch-cluster": "logs"}
    values = {
        "setup": {"engine": engine},
        "networkPolicy": {"searchCluster": {"podSelector": mine}},
    }
    policy = render(values).one("NetworkPolicy")
    assert policy["spec"]["ingress"][0]["from"][0] == {"podSelector": {"matchLabels": mine}}
    notes = render({"setup": {"engine": engine}}).notes
    assert "pods labelled " + ",".join(f"{k}={v}" for k, v in selector.items()) in notes


def test_pod_disruption_budget() -> None:
    assert render().one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    pdb = render({"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 1}})
    assert pdb.one("PodDisruptionBudget")["spec"] == {
        "minAvailable": 1,
        "selector": pdb.one("Deployment")["spec"]["selector"],
    }
    assert render({"podDisruptionBudget": {"enabled": False}}).maybe("PodDisruptionBudget") == []


def test_names_respect_the_63_character_limit() -> None:
    out = render(combination_values(("setup",)), name="r" * 53)
    for obj in out.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    assert len({o["metadata"]["name"] for o in out.objects if o["kind"] == "Job"}) == 2


def test_recreate_strategy_drops_the_rolling_update_block() -> None:
    deploy = render({"updateStrategy": {"type": "Recreate"}}).one("Deployment")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert render().one("Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
