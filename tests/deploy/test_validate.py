"""Every rendered manifest and every kustomize output is a valid object (strict: no unknown
fields) of every Kubernetes minor version the chart claims (Chart.yaml kubeVersion)."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from .helpers import (
    CHART_DIR,
    COMBINATIONS,
    MONITORING_APIS,
    Obj,
    ci_values_files,
    claimed_min_version,
    combination_values,
    deep_merge,
    kubectl,
    kustomize,
    load_yaml,
    render,
    validate_object,
    validated_versions,
)

VERSIONS = validated_versions()
EDGE_VERSIONS = sorted({VERSIONS[0], VERSIONS[-1]})
OVERLAYS = ["base", "overlays/gpu", "overlays/cpu-dev"]
needs_kubectl = pytest.mark.skipif(kubectl() is None, reason="kubectl (for kustomize) not found")


def _errors(objects: list[Obj], version: str) -> list[str]:
    problems = []
    for obj in objects:
        try:
            validate_object(obj, version)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {getattr(e, 'message', e)}")
        except Exception as e:  # jsonschema errors of the ServiceMonitor check
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {e}")
    return problems


def test_versions_cover_the_claimed_range() -> None:
    assert VERSIONS[0] == "{}.{}.0".format(*claimed_min_version())
    assert len(VERSIONS) >= 5, VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_default_render_is_valid(version: str) -> None:
    out = render(kube_version=version, api_versions=MONITORING_APIS)
    assert _errors(out.objects, version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_documented_values_files_are_valid(version: str) -> None:
    for path in ci_values_files():
        out = render(load_yaml(path), kube_version=version, api_versions=MONITORING_APIS)
        assert _errors(out.objects, version) == [], path.name


@pytest.mark.parametrize("version", EDGE_VERSIONS)
def test_every_combination_is_valid(version: str) -> None:
    for combo in COMBINATIONS:
        out = render(combination_values(combo), kube_version=version, api_versions=MONITORING_APIS)
        assert _errors(out.objects, version) == [], combo


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_output_is_valid(overlay: str) -> None:
    objects = list(kustomize(overlay))
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "NetworkPolicy"}
    for version in VERSIONS:
        assert _errors(objects, version) == [], version


def test_validation_catches_a_misspelt_field() -> None:
    deploy = copy.deepcopy(render().one("Deployment"))
    deploy["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert _errors([deploy], VERSIONS[-1]) != []


def test_validation_catches_a_bad_service_monitor() -> None:
    values = combination_values(("servicemonitor",))
    monitor = copy.deepcopy(render(values, api_versions=MONITORING_APIS).one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert _errors([monitor], VERSIONS[-1]) != []


@pytest.mark.parametrize("version", EDGE_VERSIONS)
def test_fleet_with_every_other_axis_is_valid(version: str) -> None:
    fleet = load_yaml(CHART_DIR / "ci" / "fleet-values.yaml")
    for combo in COMBINATIONS:
        if "external" in combo:
            continue
        values = deep_merge(combination_values(combo), fleet)
        out = render(values, kube_version=version, api_versions=MONITORING_APIS)
        assert len(out.maybe("Deployment")) == 2, combo
        assert _errors(out.objects, version) == [], combo
