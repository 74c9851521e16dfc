"""values.schema.json refuses values of the wrong type or shape before anything renders."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from .helpers import CHART_DIR, chart, load_yaml, render

BAD_VALUES: list[tuple[str, dict[str, Any], str]] = [
    ("replicas-string", {"replicaCount": "two"}, "/replicaCount"),
    ("unknown-top-level-key", {"replicas": 2}, "replicas"),
    ("unknown-mode", {"vllm": {"mode": "sideways"}}, "/vllm/mode"),
    ("external-without-urls", {"vllm": {"mode": "external"}}, "/vllm/external"),
    ("url-without-scheme", {"vllm": {"external": {"urls": ["vllm:8000"]}}}, "/vllm/external"),
    ("gpu-negative", {"vllm": {"gpu": -1}}, "/vllm/gpu"),
    ("gpu-string", {"vllm": {"gpu": "1"}}, "/vllm/gpu"),
    ("max-model-len-string", {"vllm": {"maxModelLen": "8k"}}, "/vllm/maxModelLen"),
    ("enforce-eager-string", {"vllm": {"enforceEager": "yes"}}, "/vllm/enforceEager"),
    ("gpu-memory-above-1", {"vllm": {"gpuMemoryUtilization": 1.5}}, "gpuMemoryUtilization"),
    ("cache-type", {"vllm": {"cache": {"type": "hostPath"}}}, "/vllm/cache/type"),
    ("port-range", {"sidecar": {"config": {"port": 70000}}}, "/sidecar/config/port"),
    ("max-length-string", {"sidecar": {"config": {"maxLength": "8192"}}}, "maxLength"),
    ("max-length-float", {"sidecar": {"config": {"maxLength": 81.5}}}, "maxLength"),
    ("log-level", {"sidecar": {"config": {"logLevel": "LOUD"}}}, "logLevel"),
    ("config-typo", {"sidecar": {"config": {"maxBatchToken": 1}}}, "maxBatchToken"),
    ("auth-enabled-string", {"auth": {"enabled": "true"}}, "/auth/enabled"),
    ("setup-without-urls", {"setup": {"enabled": True}}, "/setup/urls"),
    ("setup-engine", {"setup": {"engine": "solr"}}, "/setup/engine"),
    ("probe-typo", {"sidecar": {"livenessProbe": {"periodSecond": 5}}}, "periodSecond"),
    ("resources-shape", {"sidecar": {"resources": {"request": {"cpu": 1}}}}, "request"),
    ("service-monitor-interval", {"metrics": {"serviceMonitor": {"interval": 30}}}, "interval"),
    ("labels-not-strings", {"commonLabels": {"team": 7}}, "commonLabels"),
    ("drain-negative", {"drain": {"endpointPropagationSeconds": -1}}, "/drain"),
    ("drain-delay-string", {"sidecar": {"config": {"drainDelayS": "5s"}}}, "drainDelayS"),
    ("grace-string", {"terminationGracePeriodSeconds": "60"}, "terminationGrace"),
    ("fleet-replicas", {"vllm": {"fleet": {"replicas": "4"}}}, "/vllm/fleet/replicas"),
    ("discovery-zero", {"vllm": {"fleet": {"discoveryIntervalSeconds": 0}}}, "discoveryInterval"),
    ("queue-target-word", {"autoscaling": {"queue": {"targetAverageValue": "lots"}}}, "queue"),
    ("behavior-typo", {"autoscaling": {"behavior": {"scaleUpp": {}}}}, "scaleUpp"),
    ("keda-no-scheme", {"autoscaling": {"keda": {"prometheusServerAddress": "prom:9090"}}}, "keda"),
    ("memory-base-string", {"sidecar": {"memory": {"baseMiB": "512Mi"}}}, "baseMiB"),
    ("lifecycle-typo", {"sidecar": {"lifecycle": {"preStp": {}}}}, "preStp"),
    ("shm-size-list", {"vllm": {"shmSize": ["2Gi"]}}, "shmSize"),
    ("old-custom-metric", {"autoscaling": {"customMetric": {"name": "m"}}}, "customMetric"),
]


@pytest.mark.parametrize(
    ("values", "where"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES]
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as caught:
        render(values)
    assert where in str(caught.value)


def test_defaults_and_documented_examples_satisfy_the_schema() -> None:
    chart().validate_schema(chart().values)
    for path in sorted((CHART_DIR / "ci").glob("*.yaml")):
        chart().validate_schema(chart().merge_values(load_yaml(path)))


def test_schema_is_strict_at_every_level() -> None:
    """Every object in the schema states additionalProperties, so typos cannot slip through."""
    schema = chart().schema
    assert schema is not None
    missing: list[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            is_object = node.get("type") == "object" and "properties" in node
            if is_object and "additionalProperties" not in node:
                missing.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(schema, "")
    assert missing == []
