"""A recording stand-in for Elasticsearch's inference API (`custom` service), on loopback.

Follows elastic/elasticsearch x-pack inference (`CustomServiceSettings`, `CustomRequest`,
`RerankResponseParser`, `SimpleServiceIntegrationValidator`) and the specification's
`inference.put_custom`: creating an endpoint calls the service once ("test query", ["how big"]);
`${query}` and secret parameters are JSON-quoted in the request body, `${input}` is a JSON array,
headers get secrets as plain strings; the JSON paths pick `index` and `relevance_score`, whose
counts must match. 8.x refuses `compatible-with=9` media types, as a real 8.19 does.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from es_integration.versions import Version, es_supports_custom_service
from tests.es_integration import mlcommons_sim as sim

SERVICE_SETTINGS_KEYS = {
    "url",
    "headers",
    "query_parameters",
    "request",
    "response",
    "secret_parameters",
    "rate_limit",
    "batch_size",
    "input_type",
}


class EsHttpError(Exception):
    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


def json_path_all(data: Any, path: str) -> list[Any]:
    """`$.a[*].b` (the form the json_parser uses)."""
    match = re.fullmatch(r"\$\.(\w+)\[\*\]\.(\w+)", path)
    if match is None:
        raise EsHttpError(
            400, "illegal_argument_exception", f"JSON path form not simulated: {path}"
        )
    items = data.get(match.group(1)) if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise EsHttpError(400, "illegal_argument_exception", f"{path}: no list at {match.group(1)}")
    return [item.get(match.group(2)) for item in items]


@dataclass
class FakeElasticsearch:
    version: str = "9.1.0"
    license_type: str = "trial"
    post: sim.HttpPost = sim.urllib_post
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "METHOD /path" -> (status, content type, raw body), answered as is (malformed answers).
    raw_answers: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    remote_bodies: list[str] = field(default_factory=list)
    remote_headers: list[dict[str, str]] = field(default_factory=list)
    request_headers: list[dict[str, str]] = field(default_factory=list)
    response_headers: dict[str, str] = field(
        default_factory=lambda: {"X-Elastic-Product": "Elasticsearch"}
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle_with_headers(
        self, method: str, path: str, params: dict[str, str], body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        with self._lock:
            self.calls.append((method, path, copy.deepcopy(body)))
            try:
                accept = headers.get("accept", "") + headers.get("content-type", "")
                if Version.parse(self.version).major == 8 and "compatible-with=9" in accept:
                    raise EsHttpError(
                        400,
                        "media_type_header_exception",
                        "Accept version must be either version 8 or 7, but found 9",
                    )
                return 200, self._route(method, path, body)
            except EsHttpError as exc:
                return exc.status, {
                    "error": {
                        "root_cause": [{"type": exc.kind, "reason": exc.reason}],
                        "type": exc.kind,
                        "reason": exc.reason,
                    },
                    "status": exc.status,
                }

    def handle(self, method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        return self.handle_with_headers(method, path, params, body, {})

    def _route(self, method: str, path: str, body: Any) -> Any:
        if path == "/" and method == "GET":
            return {
                "name": "es-1",
                "cluster_name": "fake",
                "cluster_uuid": "u",
                "version": {"number": self.version, "build_flavor": "default"},
                "tagline": "You Know, for Search",
            }
        if path == "/_license" and method == "GET":
            return {"license": {"status": "active", "type": self.license_type, "uid": "x"}}
        match = re.fullmatch(r"/_inference/rerank/([^/]+)", path)
        if match is None:
            raise EsHttpError(404, "no_handler", f"no handler for {method} {path}")
        name = match.group(1)
        if method == "GET":
            if name not in self.endpoints:
                raise EsHttpError(
                    404, "resource_not_found_exception", f"Inference endpoint not found [{name}]"
                )
            return {"endpoints": [self._public(name)]}
        if method == "DELETE":
            if name not in self.endpoints:
                raise EsHttpError(
                    404, "resource_not_found_exception", f"Inference endpoint not found [{name}]"
                )
            del self.endpoints[name]
            return {"acknowledged": True, "pipelines": [], "indexes": []}
        if method == "PUT":
            return self._put(name, body)
        if method == "POST":
            if name not in self.endpoints:
                raise EsHttpError(
                    404, "resource_not_found_exception", f"Inference endpoint not found [{name}]"
                )
            return {"rerank": self._rerank(self.endpoints[name], body["query"], body["input"])}
        raise EsHttpError(405, "method_not_allowed", method)

    def _public(self, name: str) -> dict[str, Any]:
        endpoint = copy.deepcopy(self.endpoints[name])
        endpoint["service_settings"].pop("secret_parameters", None)
        return endpoint

    def _put(self, name: str, body: Any) -> Any:
        if not es_supports_custom_service(Version.parse(self.version)):
            raise EsHttpError(400, "status_exception", "Unknown service [custom]")
        if self.license_type not in ("enterprise", "trial"):
            raise EsHttpError(
                403, "security_exception", "current license is non-compliant for [inference]"
            )
        if name in self.endpoints:
            raise EsHttpError(
                400,
                "resource_already_exists_exception",
                f"Inference endpoint [{name}] already exists",
            )
        if set(body) - {"service", "service_settings", "task_settings", "chunking_settings"}:
            raise EsHttpError(400, "x_content_parse_exception", f"unknown keys {sorted(body)}")
        if body.get("service") != "custom":
            raise EsHttpError(400, "status_exception", "service must be custom")
        settings = body["service_settings"]
        unknown = set(settings) - SERVICE_SETTINGS_KEYS
        if unknown:
            raise EsHttpError(
                400, "validation_exception", f"unknown service_settings {sorted(unknown)}"
            )
        for required in ("url", "request", "response"):
            if required not in settings:
                raise EsHttpError(
                    400,
                    "validation_exception",
                    f"[service_settings] does not contain the required setting [{required}]",
                )
        parser = settings["response"].get("json_parser", {})
        if set(settings["response"]) != {"json_parser"} or "relevance_score" not in parser:
            raise EsHttpError(
                400, "validation_exception", "[json_parser] does not contain [relevance_score]"
            )
        endpoint = {
            "inference_id": name,
            "task_type": "rerank",
            "service": "custom",
            "service_settings": copy.deepcopy(settings),
            "task_settings": {},
        }
        # SimpleServiceIntegrationValidator: one real call before the endpoint exists.
        self._rerank(endpoint, "test query", ["how big"])
        self.endpoints[name] = endpoint
        return self._public(name)

    def _rerank(
        self, endpoint: dict[str, Any], query: str, docs: list[str]
    ) -> list[dict[str, Any]]:
        settings = endpoint["service_settings"]
        secrets = settings.get("secret_parameters", {})
        json_params = {k: json.dumps(v) for k, v in secrets.items()}
        json_params.update({"query": json.dumps(query), "input": json.dumps(docs)})

        def fill(template: str, params: dict[str, str]) -> str:
            def one(match: re.Match[str]) -> str:
                if match.group(1) not in params:
                    raise EsHttpError(
                        400,
                        "illegal_state_exception",
                        f"Found placeholder [${{{match.group(1)}}}] in field [request] "
                        "after replacement call",
                    )
                return params[match.group(1)]

            return re.sub(r"\$\{(\w+)\}", one, template)

        payload = fill(settings["request"], json_params)
        json.loads(payload)
        headers = {
            k: fill(v, {k2: str(v2) for k2, v2 in secrets.items()})
            for k, v in settings.get("headers", {}).items()
        }
        self.remote_bodies.append(payload)
        self.remote_headers.append(headers)
        status, raw = self.post(settings["url"], headers, payload.encode())
        if not 200 <= status < 300:
            raise EsHttpError(
                400,
                "status_exception",
                "Received an unsuccessful status code for request from inference entity id "
                f"[{endpoint['inference_id']}] status [{status}]",
            )
        data = json.loads(raw)
        parser = settings["response"]["json_parser"]
        scores = json_path_all(data, parser["relevance_score"])
        indices = (
            json_path_all(data, parser["reranked_index"])
            if "reranked_index" in parser
            else list(range(len(scores)))
        )
        if len(scores) != len(indices):
            raise EsHttpError(
                400,
                "illegal_state_exception",
                "The number of index fields and relevance scores must match",
            )
        if not all(isinstance(s, int | float) for s in scores):
            raise EsHttpError(400, "illegal_state_exception", "relevance_score must be numbers")
        ranked = [
            {"index": int(i), "relevance_score": float(s)}
            for i, s in zip(indices, scores, strict=True)
        ]
        return sorted(ranked, key=lambda r: -r["relevance_score"])
