"""The validator catches what it must, the spec gaps it patches are still gaps, and the fake
cluster answers the spec's recorded stories (tests/plugins/ml) the way they expect."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from es_integration.versions import Version
from tests.es_integration import spec_validator
from tests.es_integration.fake_opensearch import FakeOpenSearch
from tests.es_integration.spec_validator import OpenSearchSpec, SpecError

CONNECTOR = {
    "name": "c",
    "description": "d",
    "version": 1,
    "protocol": "http",
    "parameters": {},
    "credential": {},
    "actions": [{"action_type": "predict", "method": "POST", "url": "http://x"}],
}


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "version", "message"),
    [
        ("GET", "/_plugins/_ml/nope", {}, None, None, "no such operation"),
        ("GET", "/_cluster/settings", {"bogus": "1"}, None, None, "undocumented query parameter"),
        ("GET", "/_cluster/settings", {"flat_settings": "maybe"}, None, None, "not of type"),
        (
            "POST",
            "/_plugins/_ml/models/_register",
            {"deploy": "true"},
            {"name": "x"},
            None,
            "undocumented query parameter 'deploy'",
        ),
        (
            "POST",
            "/_plugins/_ml/connectors/_create",
            {},
            {**CONNECTOR, "protocol": "ftp"},
            None,
            "protocol",
        ),
        ("POST", "/_plugins/_ml/connectors/_create", {}, {"name": "x"}, None, "required"),
        ("PUT", "/_plugins/_ml/models/m1", {}, {"name": "x"}, Version(2, 11), "added in 2.12"),
        ("POST", "/_plugins/_ml/models/m1/_deploy", {}, {"x": 1}, None, "takes no request body"),
        (
            "PUT",
            "/_search/pipeline/p",
            {},
            {"response_processors": [{"bogus": {}}]},
            None,
            "not valid under any",
        ),
    ],
)
def test_validator_rejects(
    spec: OpenSearchSpec,
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
    version: Version | None,
    message: str,
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        spec.validate_request(method, path, params, body, version)


def test_raw_spec_still_lacks_what_we_patch(spec: OpenSearchSpec) -> None:
    """When the spec gains these, drop the patches in spec_validator._patch_gaps."""
    raw = OpenSearchSpec(spec_validator.SPEC_DIR, patch_gaps=False)
    for side in ("response_processors", "request_processors"):
        pipeline = {side: [{"ml_inference": {"model_id": "m"}}]}
        with pytest.raises(SpecError):
            raw.validate_request("PUT", "/_search/pipeline/p", {}, pipeline)
    schemas = raw.doc(raw._uri("schemas/search_pipeline._common.yaml"))["components"]["schemas"]
    assert "by_field" not in schemas["RerankResponseProcessor"]["properties"]
    output = raw.doc(raw._uri("schemas/ml._common.yaml"))["components"]["schemas"]
    assert output["PredictModelOutput"]["required"] == ["data"]


STORIES = [
    "plugins/ml/ml/connectors.yaml",
    "plugins/ml/ml/connectors/search.yaml",
    "plugins/ml/ml/connectors/update.yaml",
    "plugins/ml/ml/model_groups.yaml",
    "plugins/ml/ml/model_groups/search.yaml",
    "plugins/ml/ml/model_groups/update.yaml",
]


def _substitute(value: Any, outputs: dict[str, Any]) -> Any:
    if isinstance(value, str):
        match = re.fullmatch(r"\$\{(\w+)\.(\w+)\}", value)
        return outputs[match.group(1)][match.group(2)] if match else value
    if isinstance(value, dict):
        return {k: _substitute(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, outputs) for v in value]
    return value


def _contains(actual: Any, expected: Any) -> bool:
    """The stories' partial payload match: objects by key, arrays element by element."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(expected)
            and all(_contains(a, e) for a, e in zip(actual, expected, strict=False))
        )
    return bool(actual == expected)


@pytest.mark.parametrize("story_path", STORIES)
def test_fake_cluster_answers_the_recorded_stories(spec: OpenSearchSpec, story_path: str) -> None:
    story = yaml.safe_load((spec_validator.SPEC_DIR / "tests" / story_path).read_text())
    minimum = re.sub(r"[^\d.]", "", story.get("version", ">= 2.12"))
    fake = FakeOpenSearch(version=str(max(Version.parse(minimum), Version(2, 12))), spec=spec)
    outputs: dict[str, Any] = {}
    steps = [*story.get("prologues", []), *story["chapters"], *story.get("epilogues", [])]
    for step in steps:
        params = _substitute(step.get("parameters", {}), outputs)
        path = step["path"]
        for name in re.findall(r"\{(\w+)\}", path):
            path = path.replace("{" + name + "}", str(params.pop(name)))
        body = _substitute((step.get("request") or {}).get("payload"), outputs)
        status, response = fake.handle(step["method"], path, params, body)
        wanted = step.get("status") or [(step.get("response") or {}).get("status", 200)]
        assert status in wanted, (step, response)
        expected = (step.get("response") or {}).get("payload")
        if expected is not None:
            assert _contains(response, expected), (step["path"], response, expected)
        for name, source in (step.get("output") or {}).items():
            value: Any = response
            for part in source.split(".")[1:]:
                value = value[part]
            outputs.setdefault(step.get("id", ""), {})[name] = value
    assert fake.violations == []


def test_stories_exist_where_expected(spec: OpenSearchSpec) -> None:
    for story in STORIES:
        assert Path(spec_validator.SPEC_DIR / "tests" / story).is_file(), story
