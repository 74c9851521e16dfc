"""Answers for `--dry-run`: an empty cluster of the assumed version, so every request of a first
setup can be printed without sending anything."""

from __future__ import annotations

import re
from typing import Any

from es_integration.transport import Request, Response
from es_integration.versions import Version

DEFAULT_OPENSEARCH_VERSION = "3.0.0"
DEFAULT_ELASTICSEARCH_VERSION = "9.1.0"

# What a distribution's node lists in GET /_nodes/search_pipelines (search-pipeline-common,
# ml-commons and neural-search processors).
_REQUEST_PROCESSORS = ("filter_query", "ml_inference", "oversample", "script")
_RESPONSE_PROCESSORS = ("collapse", "ml_inference", "rename_field", "rerank", "truncate_hits")
# Two of ML Commons' default trusted endpoints, enough to show they are kept.
_DEFAULT_TRUSTED = ["^https://api\\.openai\\.com/.*$", "^https://api\\.cohere\\.ai/.*$"]


class EmptyOpenSearch:
    def __init__(self, version: str) -> None:
        self.version = Version.parse(version)
        self._deployed: set[str] = set()
        self._counter = 0

    def _id(self, kind: str) -> str:
        self._counter += 1
        return f"dry-run-{kind}-{self._counter}"

    def __call__(self, request: Request) -> Response:
        method, path = request.method, request.path
        if path == "/":
            return Response(
                200, {"version": {"number": str(self.version), "distribution": "opensearch"}}
            )
        if path == "/_cat/plugins":
            names = ["opensearch-ml", "opensearch-neural-search"]
            return Response(200, [{"name": "node-1", "component": n} for n in names])
        if path == "/_nodes/search_pipelines":
            pipelines = {
                "request_processors": [{"type": name} for name in _REQUEST_PROCESSORS],
                "response_processors": [{"type": name} for name in _RESPONSE_PROCESSORS],
            }
            return Response(200, {"nodes": {"node-1": {"search_pipelines": pipelines}}})
        if path == "/_cluster/settings" and method == "GET":
            defaults: dict[str, Any] = {
                "plugins.ml_commons.trusted_connector_endpoints_regex": _DEFAULT_TRUSTED,
                "plugins.ml_commons.model_access_control_enabled": "false",
            }
            if self.version >= Version(2, 15):
                defaults["plugins.ml_commons.connector.private_ip_enabled"] = "false"
            if self.version >= Version(3, 7):
                defaults["plugins.ml_commons.trusted_connector_private_endpoints_regex"] = []
            return Response(200, {"persistent": {}, "transient": {}, "defaults": defaults})
        if path.endswith("/_search") and path.startswith("/_plugins/_ml/"):
            return Response(404, {"error": {"type": "index_not_found_exception"}})
        if path == "/_plugins/_ml/model_groups/_register":
            return Response(200, {"model_group_id": self._id("model-group"), "status": "CREATED"})
        if path == "/_plugins/_ml/connectors/_create":
            return Response(200, {"connector_id": self._id("connector")})
        if path == "/_plugins/_ml/models/_register":
            model_id = self._id("model")
            return Response(
                200, {"task_id": self._id("task"), "status": "CREATED", "model_id": model_id}
            )
        deploy = re.fullmatch(r"/_plugins/_ml/models/([^/]+)/_deploy", path)
        if deploy:
            self._deployed.add(deploy.group(1))
            return Response(200, {"task_id": self._id("task"), "status": "COMPLETED"})
        model = re.fullmatch(r"/_plugins/_ml/models/([^/_][^/]*)", path)
        if model and method == "GET":
            state = "DEPLOYED" if model.group(1) in self._deployed else "REGISTERED"
            return Response(200, {"model_state": state})
        if path.startswith("/_search/pipeline/") and method == "GET":
            return Response(404, {})
        index = re.fullmatch(r"/([^/_][^/]*)/_settings", path)
        if index and method == "GET":
            return Response(200, {index.group(1): {"settings": {}}})
        return Response(200, {"acknowledged": True})


class EmptyElasticsearch:
    def __init__(self, version: str) -> None:
        self.version = Version.parse(version)

    def __call__(self, request: Request) -> Response:
        if request.path == "/":
            return Response(200, {"version": {"number": str(self.version)}})
        if request.path == "/_license":
            return Response(200, {"license": {"type": "trial", "status": "active"}})
        if request.method == "GET" and request.path.startswith("/_inference/"):
            return Response(404, {"error": {"type": "resource_not_found_exception"}})
        return Response(200, {"acknowledged": True})
