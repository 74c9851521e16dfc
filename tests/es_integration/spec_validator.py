"""Validate REST calls against the official OpenSearch API specification (OpenAPI 3.1, YAML).

The spec lives next to the repository (`<repo>/../shared/opensearch-api-spec`): tests that need it
skip with a reason when it is absent. A call is checked for: a documented path and method, its
path and query parameters (names, types, enums), its body against the request schema, and the
operation's and parameters' `x-version-added` / `x-version-removed` against the cluster version.
Responses of the fake cluster are checked against the documented response schemas too.

Known gaps of the spec copy, patched in memory (tests check each gap is still there, so a fixed
spec shows up): the `ml_inference` search response and request processors are missing from
`ResponseProcessor` and `RequestProcessor`, and `by_field` from `RerankResponseProcessor`
(schemas taken from ml-commons `MLInferenceSearchResponseProcessor.Factory` and
`MLInferenceSearchRequestProcessor.Factory`, and neural-search `RerankProcessorFactory`);
`PredictModelOutput` requires `data`, but a remote model without a post-process function answers
`{"name": "response", "dataAsMap": {...}}` (ml-commons `AbstractConnector.parseResponse`,
`ModelTensor.toXContent` writes `data` only when set).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from es_integration.versions import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO_ROOT.parent / "shared" / "opensearch-api-spec"

_PIPELINE_SCHEMAS = "schemas/search_pipeline._common.yaml"
_ML_SCHEMAS = "schemas/ml._common.yaml"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

ML_INFERENCE_RESPONSE_PROCESSOR: dict[str, Any] = {
    "x-version-added": "2.16",
    "type": "object",
    "title": "ml_inference",
    "properties": {
        "ml_inference": {
            "type": "object",
            "properties": {
                "tag": {"type": "string"},
                "description": {"type": "string"},
                "ignore_failure": {"type": "boolean"},
                "model_id": {"type": "string"},
                "function_name": {"type": "string"},
                "model_input": {"type": "string"},
                "input_map": {
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "output_map": {
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": {"type": "string"}},
                },
                "optional_input_map": {"type": "array"},
                "optional_output_map": {"type": "array"},
                "model_config": {"type": "object"},
                "max_prediction_tasks": {"type": "integer"},
                "ignore_missing": {"type": "boolean"},
                "full_response_path": {"type": "boolean"},
                "override": {"type": "boolean"},
                "one_to_one": {"type": "boolean"},
            },
            "required": ["model_id"],
            "additionalProperties": False,
        }
    },
    "required": ["ml_inference"],
}

# The request processor's factory reads the same keys but `override` and `one_to_one`, plus
# `query_template`.
ML_INFERENCE_REQUEST_PROCESSOR: dict[str, Any] = copy.deepcopy(ML_INFERENCE_RESPONSE_PROCESSOR)
_REQUEST_KEYS = ML_INFERENCE_REQUEST_PROCESSOR["properties"]["ml_inference"]["properties"]
del _REQUEST_KEYS["override"], _REQUEST_KEYS["one_to_one"]
_REQUEST_KEYS["query_template"] = {"type": "string"}

BY_FIELD_RERANKER: dict[str, Any] = {
    "x-version-added": "2.18",
    "type": "object",
    "properties": {
        "target_field": {"type": "string"},
        "remove_target_field": {"type": "boolean"},
        "keep_previous_score": {"type": "boolean"},
        "previous_score_field": {"type": "string"},
    },
    "required": ["target_field"],
    "additionalProperties": False,
}


def spec_available() -> bool:
    return (SPEC_DIR / "spec" / "namespaces" / "ml.yaml").is_file() and (
        SPEC_DIR / "tests"
    ).is_dir()


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    op: dict[str, Any]
    path_params: dict[str, str]
    file_uri: str


class SpecError(AssertionError):
    pass


class OpenSearchSpec:
    def __init__(self, spec_dir: Path = SPEC_DIR, *, patch_gaps: bool = True) -> None:
        root = spec_dir / "spec"
        self._root = root.resolve()
        self.documents: dict[str, Any] = {}  # loaded on first use: libyaml, then cached
        if patch_gaps:
            self._patch_gaps()
        self.registry: Registry[Any] = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        self._paths: list[tuple[str, str, re.Pattern[str], int, dict[str, Any]]] = []
        for path in sorted((root / "namespaces").glob("*.yaml")):
            uri = path.resolve().as_uri()
            for template, item in (self.doc(uri).get("paths") or {}).items():
                literal = sum(1 for part in template.split("/") if part and "{" not in part)
                pattern = re.compile(
                    "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
                )
                self._paths.append((uri, template, pattern, literal, item))
        self._globals = self.doc(self._uri("_global_parameters.yaml"))

    def doc(self, uri: str) -> Any:
        if uri not in self.documents:
            path = Path(unquote(urlsplit(uri).path))
            self.documents[uri] = yaml.load(path.read_text(), Loader=_LOADER)
        return self.documents[uri]

    def _retrieve(self, uri: str) -> Resource[Any]:
        return Resource(contents=self.doc(uri), specification=DRAFT202012)

    def _uri(self, relative: str) -> str:
        return (self._root / relative).resolve().as_uri()

    def _patch_gaps(self) -> None:
        schemas = self.doc(self._uri(_PIPELINE_SCHEMAS))["components"]["schemas"]
        schemas["ResponseProcessor"]["oneOf"].append(copy.deepcopy(ML_INFERENCE_RESPONSE_PROCESSOR))
        schemas["RequestProcessor"]["oneOf"].append(copy.deepcopy(ML_INFERENCE_REQUEST_PROCESSOR))
        schemas["RerankResponseProcessor"]["properties"]["by_field"] = copy.deepcopy(
            BY_FIELD_RERANKER
        )
        ml = self.doc(self._uri(_ML_SCHEMAS))["components"]["schemas"]["PredictModelOutput"]
        ml["properties"]["dataAsMap"] = {"type": "object"}
        ml["anyOf"] = [{"required": ml.pop("required")}, {"required": ["dataAsMap"]}]

    def resolve(self, uri: str, node: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """Follow a `$ref` chain; returns (document URI, JSON pointer, object) of its end."""
        pointer = ""
        while "$ref" in node:
            target, _, pointer = node["$ref"].partition("#")
            uri = urljoin(uri, target) if target else uri
            doc: Any = self.doc(uri)
            for part in pointer.strip("/").split("/"):
                doc = doc[part.replace("~1", "/").replace("~0", "~")]
            node = doc
        return uri, pointer, node

    def find(self, method: str, path: str) -> Operation:
        candidates = []
        for uri, template, pattern, literal, item in self._paths:
            match = pattern.match(path)
            if match and method.lower() in item:
                candidates.append((literal, uri, template, item, match.groupdict()))
        if not candidates:
            raise SpecError(f"{method} {path}: no such operation in the OpenSearch API spec")
        candidates.sort(key=lambda c: -c[0])
        literal, uri, template, item, params = candidates[0]
        return Operation(
            template,
            method.lower(),
            item[method.lower()],
            {k: unquote(v) for k, v in params.items()},
            uri,
        )

    def _validate(self, schema_uri: str, pointer: str, instance: Any, what: str) -> None:
        ref = f"{schema_uri}#{pointer}"
        validator = self._validators.get(ref)
        if validator is None:
            validator = jsonschema.Draft202012Validator({"$ref": ref}, registry=self.registry)
            self._validators[ref] = validator
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            best = jsonschema.exceptions.best_match(errors)
            location = "/".join(str(p) for p in best.absolute_path) or "(root)"
            raise SpecError(f"{what}: {location}: {best.message[:400]}")

    def validate_request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: Any,
        version: Version | None = None,
    ) -> Operation:
        operation = self.find(method, path)
        what = f"{method} {path} ({operation.op.get('operationId')})"
        _check_version(operation.op, version, what)
        declared: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for ref in operation.op.get("parameters", []):
            uri, pointer, param = self.resolve(operation.file_uri, ref)
            declared[f"{param['in']}:{param['name']}"] = (uri, pointer, param)
        globals_uri = self._uri("_global_parameters.yaml")
        for name, param in self._globals["components"]["parameters"].items():
            declared.setdefault(
                f"query:{name}", (globals_uri, f"/components/parameters/{name}", param)
            )
        for name, value in operation.path_params.items():
            self._check_param(declared, "path", name, value, version, what)
        for name, value in params.items():
            self._check_param(declared, "query", name, value, version, what)
        for key, (_, _, param) in declared.items():
            if param.get("required") and key.startswith("query:") and key[6:] not in params:
                raise SpecError(f"{what}: required query parameter {key[6:]!r} missing")
        body_ref = operation.op.get("requestBody")
        if body_ref is None:
            if body is not None:
                raise SpecError(f"{what}: the operation takes no request body")
            return operation
        uri, pointer, request_body = self.resolve(operation.file_uri, body_ref)
        if body is None:
            if request_body.get("required"):
                raise SpecError(f"{what}: a request body is required")
            return operation
        if "application/json" not in request_body.get("content", {}):
            raise SpecError(f"{what}: the body is not documented as application/json")
        self._validate(uri, pointer + "/content/application~1json/schema", body, f"{what} body")
        return operation

    def _check_param(
        self,
        declared: dict[str, tuple[str, str, dict[str, Any]]],
        where: str,
        name: str,
        value: str,
        version: Version | None,
        what: str,
    ) -> None:
        key = f"{where}:{name}"
        if key not in declared:
            raise SpecError(f"{what}: undocumented {where} parameter {name!r}")
        uri, pointer, param = declared[key]
        if not pointer:
            raise SpecError(f"{what}: inline parameter {name!r} (validator expects $refs)")
        _check_version(param, version, f"{what} parameter {name!r}")
        _, _, schema = self.resolve(uri, param.get("schema", {}))
        self._validate(
            uri, pointer + "/schema", _coerce(value, schema), f"{what} {where} parameter {name}"
        )

    def validate_response(self, operation: Operation, status: int, body: Any) -> None:
        ref = operation.op.get("responses", {}).get(str(status))
        if ref is None:
            if 200 <= status < 300:
                raise SpecError(f"{operation.template}: status {status} is not documented")
            return
        uri, pointer, response = self.resolve(operation.file_uri, ref)
        if "application/json" not in response.get("content", {}):
            return
        what = f"response of {operation.method.upper()} {operation.template} ({status})"
        self._validate(uri, pointer + "/content/application~1json/schema", body, what)


def _check_version(node: dict[str, Any], version: Version | None, what: str) -> None:
    if version is None:
        return
    added = node.get("x-version-added")
    if added and Version.parse(str(added)) > version:
        raise SpecError(f"{what}: added in {added}, the cluster is {version}")
    removed = node.get("x-version-removed")
    if removed and Version.parse(str(removed)) <= version:
        raise SpecError(f"{what}: removed in {removed}, the cluster is {version}")


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "number":
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "array":
        return value.split(",")
    return value
