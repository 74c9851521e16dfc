"""Rendering, kustomize, validation and policy helpers for the deployment tests (all offline)."""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils as kubernetes_validate_utils
import yaml
from helm_python import _native
from kubernetes_validate.utils import all_versions as kubernetes_validate_versions

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "rerank-sidecar"
K8S_DIR = REPO / "k8s"
COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
RELEASE = "rerank-sidecar"
NAMESPACE = "search"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
POD_MONITOR_API = "monitoring.coreos.com/v1/PodMonitor"
# A cluster running the Prometheus Operator.
MONITORING_APIS = (SERVICE_MONITOR_API, POD_MONITOR_API)

# docs/contracts.md §6: the one-logit classifier head of Qwen3-Reranker in vLLM.
QWEN3_HF_OVERRIDES = {
    "architectures": ["Qwen3ForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}

# The documented value combinations: each axis is off (absent) or one of these overlays.
AXES: dict[str, Obj] = {
    "external": {"vllm": {"mode": "external", "external": {"urls": ["http://vllm.ml.svc:8000"]}}},
    "hpa": {"autoscaling": {"enabled": True}},
    "servicemonitor": {
        "metrics": {"serviceMonitor": {"enabled": True}, "vllmPodMonitor": {"enabled": True}}
    },
    "setup": {
        "setup": {
            "enabled": True,
            "urls": ["https://opensearch.search.svc:9200"],
            "existingSecret": "opensearch-credentials",
            "teardownOnDelete": True,
        }
    },
}


def _combinations() -> list[tuple[str, ...]]:
    names = sorted(AXES)
    return [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]


# Every subset of AXES: pod/external x HPA x ServiceMonitor x setup Job (16).
COMBINATIONS = _combinations()


def deep_merge(base: Obj, override: Mapping[str, Any]) -> Obj:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def combination_values(names: tuple[str, ...]) -> Obj:
    values: Obj = {}
    for name in names:
        values = deep_merge(values, AXES[name])
    return values


def ci_values_files() -> list[Path]:
    return sorted((CHART_DIR / "ci").glob("*-values.yaml"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@functools.cache
def chart() -> helm.Chart:
    return helm.Chart.load(CHART_DIR)


def render_raw(
    values: Obj | None = None,
    *,
    api_versions: tuple[str, ...] = (),
    kube_version: str | None = None,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """`helm template` offline. Chart.render() has no Capabilities options, but the native call
    takes them (kube_version, api_versions), so it is used directly."""
    opts: Obj = {"name": name, "namespace": namespace, "is_install": True}
    if kube_version:
        opts["kube_version"] = f"v{kube_version.lstrip('v')}"
    if api_versions:
        opts["api_versions"] = list(api_versions)
    rendered = _native.call_string(
        "helm_render",
        chart()._raw(),
        None if values is None else json.dumps(values),
        json.dumps(opts),
    )
    out: dict[str, str] = json.loads(rendered)
    return out


class Rendered:
    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw
        self.notes = next((v for k, v in raw.items() if k.endswith("/NOTES.txt")), "")
        self.objects: list[Obj] = []
        for path, text in sorted(raw.items()):
            if path.endswith(".txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("__source__", path)
                    self.objects.append(doc)

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def one(self, kind: str, component: str | None = None) -> Obj:
        found = [o for o in self.objects if o["kind"] == kind and _component(o) == component]
        assert len(found) == 1, f"expected one {kind} ({component}), got {len(found)}"
        return found[0]

    def maybe(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]


def _component(obj: Obj) -> str | None:
    value = obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
    return str(value) if value is not None else None


def render(values: Obj | None = None, **kwargs: Any) -> Rendered:
    return Rendered(render_raw(values, **kwargs))


def strip_source(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k != "__source__"}


# --- kustomize -------------------------------------------------------------


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def kustomize(overlay: str) -> tuple[Obj, ...]:
    exe = kubectl()
    assert exe, "kubectl is needed for `kubectl kustomize`"
    result = subprocess.run(
        [exe, "kustomize", str(K8S_DIR / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


# --- Kubernetes versions and schema validation ------------------------------


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)


def claimed_min_version() -> tuple[int, int]:
    constraint = str(load_yaml(CHART_DIR / "Chart.yaml")["kubeVersion"])
    match = re.fullmatch(r">=\s*v?(\d+)\.(\d+)\.\d+(-0)?", constraint.strip())
    assert match, f"unexpected kubeVersion constraint {constraint!r}"
    return int(match.group(1)), int(match.group(2))


def validated_versions() -> list[str]:
    """Every minor version the chart claims, up to the newest kubernetes-validate knows."""
    low = claimed_min_version()
    versions = {_minor(v) for v in kubernetes_validate_versions()}
    return [f"{a}.{b}.0" for a, b in sorted(versions) if (a, b) >= low]


# ServiceMonitor is a CRD (no schema in kubernetes-validate): the fields this chart uses, from the
# prometheus-operator CRD, with no others allowed so a typo fails.
_SERVICE_MONITOR_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


_POD_MONITOR_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "namespaceSelector": _SERVICE_MONITOR_SCHEMA["properties"]["spec"]["properties"][
                    "namespaceSelector"
                ],
                "selector": {"type": "object"},
                "podMetricsEndpoints": _SERVICE_MONITOR_SCHEMA["properties"]["spec"]["properties"][
                    "endpoints"
                ],
            },
        },
    },
}

# KEDA's ScaledObject (keda.sh/v1alpha1): the fields this chart uses, from the KEDA CRD.
_SCALED_OBJECT_SCHEMA: Obj = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"}},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"behavior": {"type": "object"}},
                        }
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": ["prometheus", "cpu"]},
                            "metricType": {"enum": ["Utilization", "AverageValue", "Value"]},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}

_CRD_SCHEMAS = {
    "ServiceMonitor": _SERVICE_MONITOR_SCHEMA,
    "PodMonitor": _POD_MONITOR_SCHEMA,
    "ScaledObject": _SCALED_OBJECT_SCHEMA,
}


# kubernetes-validate re-reads and re-parses its (large) schema files on every call; the files
# never change during a run, so caching the parsed JSON makes the version matrix ~10x faster.
if not hasattr(kubernetes_validate_utils.schema_contents, "cache_info"):
    kubernetes_validate_utils.schema_contents = functools.cache(
        kubernetes_validate_utils.schema_contents
    )


def validate_object(obj: Obj, version: str) -> None:
    """Raise if obj is not a valid object of Kubernetes `version` (strict: no unknown fields)."""
    import jsonschema

    clean = strip_source(obj)
    crd_schema = _CRD_SCHEMAS.get(str(clean.get("kind")))
    if crd_schema is not None:
        jsonschema.validate(clean, crd_schema)
        return
    kubernetes_validate.validate(clean, version, strict=True)


# --- pod specs and policies ---------------------------------------------------


def workload_pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a Pod or workload; None for other kinds."""
    kind = obj.get("kind")
    if kind == "Pod":
        spec: Obj = obj["spec"]
        return spec
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        template: Obj = obj["spec"]["template"]["spec"]
        return template
    return None


def pod_spec(obj: Obj) -> Obj:
    """The pod spec of an object that must have one."""
    spec = workload_pod_spec(obj)
    assert spec is not None, f"{obj.get('kind')} has no pod spec"
    return spec


def containers(obj: Obj) -> Iterator[Obj]:
    spec = workload_pod_spec(obj)
    if spec:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


SENSITIVE_ENV = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|CREDENTIALS?)$", re.IGNORECASE)


def policy_violations(obj: Obj) -> list[str]:
    """Hardening rules every rendered workload must follow; returns what is wrong."""
    problems: list[str] = []
    spec = workload_pod_spec(obj)
    if spec is None:
        return problems
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    long_running = obj["kind"] == "Deployment"
    pod_ctx = spec.get("securityContext", {})
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: service account token is mounted")
    if pod_ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{where}: no RuntimeDefault seccomp profile")
    for vol in spec.get("volumes", []):
        if "hostPath" in vol:
            problems.append(f"{where}: hostPath volume {vol['name']}")
    for c in containers(obj):
        at = f"{where}/{c['name']}"
        res = c.get("resources", {})
        if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
            problems.append(f"{at}: no cpu/memory requests")
        if not res.get("limits", {}).get("memory"):
            problems.append(f"{at}: no memory limit")
        ctx = c.get("securityContext", {})
        run_as_non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        if run_as_non_root is not True or uid in (None, 0):
            problems.append(f"{at}: may run as root")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{at}: writable root filesystem")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}: privilege escalation allowed")
        if ctx.get("privileged"):
            problems.append(f"{at}: privileged")
        if ctx.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{at}: capabilities not dropped")
        if ctx.get("capabilities", {}).get("add"):
            problems.append(f"{at}: capabilities added")
        if long_running:
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{at}: no {probe}")
        for env in c.get("env", []):
            if SENSITIVE_ENV.search(env["name"]) and "value" in env:
                problems.append(f"{at}: secret {env['name']} inlined instead of secretKeyRef")
        for arg in [*c.get("command", []), *c.get("args", [])]:
            if re.search(r"(?i)(token|password|api-key)=", str(arg)):
                problems.append(f"{at}: credential in arguments: {arg}")
    return problems


def vllm_flag_problems(args: list[str], *, min_model_len: int) -> list[str]:
    """The Qwen3 reranker serve flags (CONTRACTS §6) in a vLLM argument list."""
    problems: list[str] = []

    def value(flag: str) -> str | None:
        if flag not in args:
            return None
        index = args.index(flag)
        return args[index + 1] if index + 1 < len(args) else None

    if value("--runner") != "pooling":
        problems.append("--runner pooling missing")
    overrides = value("--hf-overrides")
    if overrides is None:
        problems.append("--hf-overrides missing")
    else:
        try:
            if json.loads(overrides) != QWEN3_HF_OVERRIDES:
                problems.append(f"--hf-overrides differs: {overrides}")
        except json.JSONDecodeError:
            problems.append(f"--hf-overrides is not JSON: {overrides}")
    max_len = value("--max-model-len")
    if max_len is None or not max_len.isdigit():
        problems.append("--max-model-len missing")
    elif int(max_len) < min_model_len:
        problems.append(f"--max-model-len {max_len} < sidecar max length {min_model_len}")
    if "--chat-template" in args:
        problems.append("--chat-template would apply the prompt template twice")
    if "--enforce-eager" not in args:
        problems.append("--enforce-eager missing (torch.compile + chunked prefill bug)")
    return problems


def _pre_stop_seconds(c: Obj) -> int | None:
    command = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return int(command[1]) if command[:1] == ["sleep"] and len(command) == 2 else None


def drain_problems(deploy: Obj, sidecar_env: Mapping[str, Any]) -> list[str]:
    """The drain timeline of a Deployment (docs/deploy.md): every container sleeps in preStop
    while the pod leaves the endpoints; vLLM drains (--shutdown-timeout > 0) and, next to a
    sidecar, takes work until the sidecar's drain delay is over; the grace period covers the
    slowest container's preStop plus its drain."""
    problems: list[str] = []
    where = deploy["metadata"]["name"]
    grace = pod_spec(deploy)["terminationGracePeriodSeconds"]
    drain_delay = float(sidecar_env["RERANK_DRAIN_DELAY_S"])
    shutdown = float(sidecar_env["RERANK_SHUTDOWN_TIMEOUT_S"])
    needed = 0.0
    pre_stops: dict[str, int] = {}
    for c in containers(deploy):
        seconds = _pre_stop_seconds(c)
        if seconds is None or seconds <= 0:
            problems.append(f"{where}/{c['name']}: no preStop sleep")
            continue
        pre_stops[c["name"]] = seconds
        if c["name"] == "sidecar":
            needed = max(needed, seconds + drain_delay + shutdown)
        elif c["name"] == "vllm":
            args = c["args"]
            timeout = (
                int(args[args.index("--shutdown-timeout") + 1])
                if "--shutdown-timeout" in args
                else 0
            )
            if timeout <= 0:
                problems.append(f"{where}/vllm: --shutdown-timeout 0 aborts running requests")
            needed = max(needed, seconds + timeout)
    both = "sidecar" in pre_stops and "vllm" in pre_stops
    if both and pre_stops["vllm"] < pre_stops["sidecar"] + drain_delay:
        problems.append(f"{where}: vLLM stops taking work before the sidecar stops sending it")
    if grace < needed:
        problems.append(f"{where}: grace {grace} s < preStop + drain {needed} s")
    return problems


def env_map(container: Obj) -> dict[str, Any]:
    """Env as name -> value or valueFrom (order-insensitive; kustomize reorders patched entries)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def container(obj: Obj, name: str) -> Obj:
    found = [c for c in containers(obj) if c["name"] == name]
    assert len(found) == 1, f"container {name} not found in {obj['metadata']['name']}"
    return found[0]


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
