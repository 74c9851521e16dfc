"""Hardening and Qwen3-serving rules on every rendered object: chart (all combinations and
documented values files) and kustomize outputs."""

from __future__ import annotations

import copy
import functools

import pytest

from .helpers import (
    COMBINATIONS,
    MONITORING_APIS,
    Obj,
    ci_values_files,
    combination_values,
    container,
    containers,
    drain_problems,
    env_map,
    kubectl,
    kustomize,
    load_yaml,
    policy_violations,
    render,
    vllm_flag_problems,
)

OVERLAYS = ["overlays/gpu", "overlays/cpu-dev"]
CACHE_VARS = ("HF_HOME", "HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR")


@functools.cache
def chart_sets() -> tuple[tuple[str, tuple[Obj, ...]], ...]:
    sets: list[tuple[str, tuple[Obj, ...]]] = []
    for combo in COMBINATIONS:
        out = render(combination_values(combo), api_versions=MONITORING_APIS)
        sets.append(("+".join(combo) or "default", tuple(out.objects)))
    for path in ci_values_files():
        out = render(load_yaml(path), api_versions=MONITORING_APIS)
        sets.append((path.name, tuple(out.objects)))
    return tuple(sets)


def all_sets() -> list[tuple[str, tuple[Obj, ...]]]:
    sets = list(chart_sets())
    if kubectl() is not None:
        sets += [(f"kustomize {o}", kustomize(o)) for o in OVERLAYS]
    return sets


def test_every_container_is_hardened_and_sized() -> None:
    checked = 0
    for name, objects in all_sets():
        for obj in objects:
            assert policy_violations(obj) == [], name
            checked += sum(1 for _ in containers(obj))
    assert checked > 50


def test_every_vllm_container_serves_qwen3_as_a_reranker() -> None:
    seen = 0
    for name, objects in all_sets():
        for obj in objects:
            for c in containers(obj):
                if c["name"] != "vllm":
                    continue
                seen += 1
                sidecar_len = int(_sidecar_env(objects)["RERANK_MAX_LENGTH"])
                assert c["command"] == ["vllm", "serve"], name
                assert c["image"].startswith(
                    ("vllm/vllm-openai:", "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:")
                ), name
                assert vllm_flag_problems(c["args"], min_model_len=sidecar_len) == [], name
    assert seen >= 10


def _sidecar_env(objects: tuple[Obj, ...]) -> dict[str, object]:
    """The sidecar's settings in a set (fleet: vLLM runs in a Deployment of its own)."""
    (deploy,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and any(c["name"] == "sidecar" for c in containers(o))
    ]
    return env_map(container(deploy, "sidecar"))


def test_every_deployment_drains_before_it_stops() -> None:
    checked = 0
    for name, objects in all_sets():
        for obj in objects:
            if obj["kind"] == "Deployment":
                assert drain_problems(obj, _sidecar_env(objects)) == [], name
                checked += 1
    assert checked > 20


def test_secrets_are_referenced_never_inlined() -> None:
    for name, objects in all_sets():
        kinds = [o["kind"] for o in objects]
        assert "ConfigMap" not in kinds, name
        secrets = [o for o in objects if o["kind"] == "Secret"]
        # Only the generated bearer token; credentials and HF tokens come from existing Secrets.
        assert [s["metadata"]["name"] for s in secrets] in ([], ["rerank-sidecar-auth"]), name
        for obj in objects:
            for c in containers(obj):
                for env_name, value in env_map(c).items():
                    if env_name.endswith(("TOKEN", "PASSWORD", "API_KEY")):
                        assert isinstance(value, dict) and "secretKeyRef" in value, (name, env_name)


def test_every_workload_probes_its_containers() -> None:
    for name, objects in all_sets():
        for obj in objects:
            if obj["kind"] != "Deployment":
                continue
            for c in containers(obj):
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert probe in c, (name, c["name"], probe)
            if not any(c["name"] == "sidecar" for c in containers(obj)):
                continue  # the fleet's vLLM Deployment
            sidecar = container(obj, "sidecar")
            assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
            # Readiness is the cached answer: a short timeout; the deep check is startup's.
            assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert sidecar["readinessProbe"]["timeoutSeconds"] <= 2
            assert sidecar["startupProbe"]["httpGet"]["path"] == "/readyz"


def test_vllm_startup_probe_allows_for_model_download() -> None:
    for name, objects in all_sets():
        for obj in objects:
            for c in containers(obj):
                if c["name"] == "vllm":
                    probe = c["startupProbe"]
                    assert probe["periodSeconds"] * probe["failureThreshold"] >= 15 * 60, name


def test_root_filesystem_is_read_only_but_caches_are_writable() -> None:
    """With readOnlyRootFilesystem, every path a container writes must be a volume."""
    for name, objects in all_sets():
        for obj in objects:
            for c in containers(obj):
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, (name, c["name"])
                env = env_map(c)
                for var in CACHE_VARS:
                    path = env.get(var)
                    if isinstance(path, str):
                        inside = any(path.startswith(m.rstrip("/") + "/") for m in mounts)
                        assert inside, (name, var)


# --- the checks themselves can fail --------------------------------------------------------


def _deployment() -> Obj:
    return copy.deepcopy(render().one("Deployment"))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["securityContext"].pop("readOnlyRootFilesystem"), "writable root"),
        (lambda c: c["securityContext"].update(allowPrivilegeEscalation=True), "escalation"),
        (lambda c: c["securityContext"].update(capabilities={"drop": ["NET_RAW"]}), "capabil"),
        (lambda c: c["securityContext"].update(runAsUser=0), "root"),
        (lambda c: c.pop("resources"), "requests"),
        (lambda c: c["resources"].pop("limits"), "memory limit"),
        (lambda c: c.pop("readinessProbe"), "readinessProbe"),
        (lambda c: c["env"].append({"name": "RERANK_API_TOKEN", "value": "s3cret"}), "inlined"),
        (lambda c: c["args"].append("--api-key=s3cret"), "credential"),
    ],
)
def test_policy_check_flags_violations(mutate: object, expected: str) -> None:
    deploy = _deployment()
    mutate(container(deploy, "vllm"))  # type: ignore[operator]
    assert any(expected in p for p in policy_violations(deploy)), policy_violations(deploy)


def test_policy_check_flags_a_mounted_service_account_token() -> None:
    deploy = _deployment()
    deploy["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    assert policy_violations(deploy) != []


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("--runner", "--runner"),
        ("--hf-overrides", "--hf-overrides"),
        ("--max-model-len", "--max-model-len"),
        ("--enforce-eager", "--enforce-eager"),
    ],
)
def test_vllm_flag_check_flags_a_missing_flag(flag: str, expected: str) -> None:
    args = list(container(_deployment(), "vllm")["args"])
    index = args.index(flag)
    del args[index : index + (1 if flag == "--enforce-eager" else 2)]
    assert any(expected in p for p in vllm_flag_problems(args, min_model_len=8192))


def test_drain_check_flags_a_short_grace_and_an_aborting_vllm() -> None:
    deploy = _deployment()
    env = env_map(container(deploy, "sidecar"))
    assert drain_problems(deploy, env) == []
    deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    assert any("grace" in p for p in drain_problems(deploy, env))
    deploy = _deployment()
    args = container(deploy, "vllm")["args"]
    args[args.index("--shutdown-timeout") + 1] = "0"
    assert any("aborts" in p for p in drain_problems(deploy, env))
    deploy = _deployment()
    del container(deploy, "sidecar")["lifecycle"]
    assert any("preStop" in p for p in drain_problems(deploy, env))
    deploy = _deployment()
    container(deploy, "vllm")["lifecycle"]["preStop"]["exec"]["command"] = ["sleep", "1"]
    assert any("before the sidecar" in p for p in drain_problems(deploy, env))


def test_vllm_flag_check_flags_wrong_overrides_and_short_context() -> None:
    args = list(container(_deployment(), "vllm")["args"])
    args[args.index("--hf-overrides") + 1] = '{"architectures": ["Qwen3ForSequenceClassification"]}'
    assert any("differs" in p for p in vllm_flag_problems(args, min_model_len=8192))
    args = list(container(_deployment(), "vllm")["args"])
    assert any("<" in p for p in vllm_flag_problems(args, min_model_len=16384))
    assert any(
        "twice" in p
        for p in vllm_flag_problems([*args, "--chat-template", "t.jinja"], min_model_len=1)
    )
