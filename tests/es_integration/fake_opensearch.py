"""A recording stand-in for an OpenSearch cluster, on loopback, that answers like one.

Every request is validated against the OpenSearch API specification (path, method, query
parameters, body, version) and every 2xx answer against the documented response schema; a
violation is answered 400 and recorded, so a test fails. The state and the refusals follow
ml-commons and OpenSearch behaviour (named where it matters): unknown cluster settings per
version, trusted-endpoint regexes, private addresses, connectors used by deployed models, model
groups with models, deletes of deployed models, processor types per version. Predictions and
searches run setup's own connectors and pipelines through `mlcommons_sim`.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from es_integration.options import is_private_endpoint
from es_integration.versions import Version
from tests.es_integration import mlcommons_sim as sim
from tests.es_integration.spec_validator import OpenSearchSpec, SpecError
from tests.support.ml_commons import MLCommonsError

DEFAULT_TRUSTED = ["^https://api\\.openai\\.com/.*$", "^https://api\\.cohere\\.ai/.*$"]
TRUSTED = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
PRIVATE_REGEX = "plugins.ml_commons.trusted_connector_private_endpoints_regex"
ACCESS = "plugins.ml_commons.model_access_control_enabled"
DEPLOYED = {"DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING"}


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    body: Any
    status: int = 0
    response: Any = None

    @property
    def mutating(self) -> bool:
        return self.method in ("PUT", "DELETE") or (
            self.method == "POST"
            and not self.path.endswith(("/_search", "/_predict"))
            and "/_predict/" not in self.path
        )


class HttpError(Exception):
    def __init__(self, status: int, reason: str, kind: str = "illegal_argument_exception"):
        super().__init__(reason)
        self.status, self.reason, self.kind = status, reason, kind


@dataclass
class FakeOpenSearch:
    version: str = "2.19.1"
    spec: OpenSearchSpec | None = None
    plugins: tuple[str, ...] = ("opensearch-ml", "opensearch-neural-search")
    # GET /_nodes/search_pipelines, per node: a distribution's (a node without the
    # search-pipeline-common module lacks oversample and truncate_hits).
    search_processors: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
        (("filter_query", "ml_inference", "oversample", "script"),
         ("collapse", "ml_inference", "rerank", "truncate_hits")),
    )  # fmt: skip
    post: sim.HttpPost = sim.urllib_post
    deploy_polls: int = 1  # GETs a model stays DEPLOYING after _deploy
    deploy_fails: bool = False
    # What `_undeploy` leaves: a real 2.19.1 node once left DEPLOY_FAILED instead of UNDEPLOYED.
    undeployed_state: str = "UNDEPLOYED"
    access_control: bool = False
    persistent: dict[str, Any] = field(default_factory=dict)
    transient: dict[str, Any] = field(default_factory=dict)
    indices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> flat settings
    aliases: dict[str, list[str]] = field(default_factory=dict)
    mappings: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> properties
    documents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    remote_calls: list[sim.RemoteCall] = field(default_factory=list)
    pipeline_errors: list[str] = field(default_factory=list)
    request_headers: list[dict[str, str]] = field(default_factory=list)
    # "METHOD /path" -> (status, content type, raw body): answered as is, for malformed answers.
    raw_answers: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def v(self) -> Version:
        return Version.parse(self.version)

    def _id(self, kind: str) -> str:
        return f"{kind}{next(self._ids):04d}"

    # --- settings the version knows ---------------------------------------------------------

    def defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            TRUSTED: list(DEFAULT_TRUSTED),
            ACCESS: str(self.access_control).lower(),
        }
        if self.v >= Version(2, 15):
            out[PRIVATE_IP] = "false"
        if self.v >= Version(3, 7):
            out[PRIVATE_REGEX] = []
        return out

    def effective(self, key: str) -> Any:
        for source in (self.transient, self.persistent, self.defaults()):
            if key in source:
                return source[key]
        return None

    # --- dispatch ---------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        with self._lock:
            path = unquote(raw_path)
            call = Call(method, path, params, copy.deepcopy(body))
            self.calls.append(call)
            operation = None
            if self.spec is not None:
                try:
                    operation = self.spec.validate_request(method, path, params, body, self.v)
                except SpecError as exc:
                    self.violations.append(str(exc))
                    call.status, call.response = (
                        400,
                        {"error": {"type": "spec_violation", "reason": str(exc)}},
                    )
                    return call.status, call.response
            try:
                status, response = 200, self._route(method, path, params, body)
            except HttpError as exc:
                status = exc.status
                response = {
                    "error": {
                        "root_cause": [{"type": exc.kind, "reason": exc.reason}],
                        "type": exc.kind,
                        "reason": exc.reason,
                    },
                    "status": exc.status,
                }
            if self.spec is not None and operation is not None and 200 <= status < 300:
                try:
                    self.spec.validate_response(operation, status, response)
                except SpecError as exc:
                    self.violations.append(str(exc))
            call.status, call.response = status, response
            return status, response

    def _route(self, method: str, path: str, params: dict[str, str], body: Any) -> Any:
        routes: list[tuple[str, str, Any]] = [
            ("GET", r"/", self._info),
            ("GET", r"/_cat/plugins", self._plugins),
            ("GET", r"/_nodes/search_pipelines", self._search_pipelines),
            ("GET", r"/_cluster/settings", self._get_settings),
            ("PUT", r"/_cluster/settings", self._put_settings),
            ("POST", r"/_plugins/_ml/model_groups/_register", self._register_group),
            ("POST", r"/_plugins/_ml/model_groups/_search", self._search_groups),
            ("GET", r"/_plugins/_ml/model_groups/_search", self._search_groups),
            ("GET", r"/_plugins/_ml/model_groups/(?P<id>[^/]+)", self._get_group),
            ("PUT", r"/_plugins/_ml/model_groups/(?P<id>[^/]+)", self._update_group),
            ("DELETE", r"/_plugins/_ml/model_groups/(?P<id>[^/]+)", self._delete_group),
            ("POST", r"/_plugins/_ml/connectors/_create", self._create_connector),
            ("POST", r"/_plugins/_ml/connectors/_search", self._search_connectors),
            ("GET", r"/_plugins/_ml/connectors/_search", self._search_connectors),
            ("GET", r"/_plugins/_ml/connectors/(?P<id>[^/]+)", self._get_connector),
            ("PUT", r"/_plugins/_ml/connectors/(?P<id>[^/]+)", self._update_connector),
            ("DELETE", r"/_plugins/_ml/connectors/(?P<id>[^/]+)", self._delete_connector),
            ("POST", r"/_plugins/_ml/models/_register", self._register_model),
            ("POST", r"/_plugins/_ml/models/_search", self._search_models),
            ("POST", r"/_plugins/_ml/models/(?P<id>[^/]+)/_deploy", self._deploy),
            ("POST", r"/_plugins/_ml/models/(?P<id>[^/]+)/_undeploy", self._undeploy),
            ("POST", r"/_plugins/_ml/models/(?P<id>[^/]+)/_predict", self._predict_remote),
            ("GET", r"/_plugins/_ml/models/(?P<id>[^/]+)", self._get_model),
            ("DELETE", r"/_plugins/_ml/models/(?P<id>[^/]+)", self._delete_model),
            (
                "POST",
                r"/_plugins/_ml/_predict/text_similarity/(?P<id>[^/]+)",
                self._predict_similarity,
            ),
            ("GET", r"/_search/pipeline/(?P<id>[^/]+)", self._get_pipeline),
            ("PUT", r"/_search/pipeline/(?P<id>[^/]+)", self._put_pipeline),
            ("DELETE", r"/_search/pipeline/(?P<id>[^/]+)", self._delete_pipeline),
            ("GET", r"/(?P<index>[^/_][^/]*)/_settings", self._get_index_settings),
            ("GET", r"/(?P<index>[^/_][^/]*)/_mapping", self._get_mapping),
            ("GET", r"/_settings/(?P<name>[^/]+)", self._get_all_settings),
            ("PUT", r"/(?P<index>[^/_][^/]*)/_settings", self._put_index_settings),
            ("POST", r"/(?P<index>[^/_][^/]*)/_search", self._search),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                return handler(params=params, body=body, **match.groupdict())
        raise HttpError(404, f"no handler for {method} {path}", "no_handler")

    # --- cluster ----------------------------------------------------------------------------

    def _info(self, **_: Any) -> Any:
        return {
            "name": "node-1",
            "cluster_name": "fake",
            "cluster_uuid": "fake-uuid",
            "version": {
                "distribution": "opensearch",
                "number": self.version,
                "build_type": "tar",
                "build_hash": "0" * 40,
                "build_date": "2026-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "2.19.0",
                "minimum_index_compatibility_version": "2.0.0",
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/",
        }

    def _plugins(self, **_: Any) -> Any:
        return [{"name": "node-1", "component": p, "version": self.version} for p in self.plugins]

    def _search_pipelines(self, **_: Any) -> Any:
        nodes = {}
        for number, (request, response) in enumerate(self.search_processors):
            nodes[f"node-{number + 1}"] = {
                "name": f"node-{number + 1}",
                "search_pipelines": {
                    "request_processors": [{"type": name} for name in request],
                    "response_processors": [{"type": name} for name in response],
                },
            }
        return {"_nodes": {"total": len(nodes), "successful": len(nodes), "failed": 0},
                "cluster_name": "fake", "nodes": nodes}  # fmt: skip

    def _get_settings(self, params: dict[str, str], **_: Any) -> Any:
        out: dict[str, Any] = {
            "persistent": dict(self.persistent),
            "transient": dict(self.transient),
        }
        if params.get("include_defaults") == "true":
            out["defaults"] = {
                k: v
                for k, v in self.defaults().items()
                if k not in self.persistent and k not in self.transient
            }
        return out

    def _put_settings(self, body: Any, **_: Any) -> Any:
        known = set(self.defaults())
        for scope in ("persistent", "transient"):
            for key, value in (body.get(scope) or {}).items():
                if key not in known:
                    raise HttpError(400, f"{scope} setting [{key}], not recognized")
                target = self.persistent if scope == "persistent" else self.transient
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = (
                        [str(v) for v in value] if isinstance(value, list) else str(value).lower()
                    )
        return {
            "acknowledged": True,
            "persistent": body.get("persistent", {}),
            "transient": body.get("transient", {}),
        }

    # --- model groups -----------------------------------------------------------------------

    def _register_group(self, body: Any, **_: Any) -> Any:
        for gid, group in self.model_groups.items():
            if group["name"] == body["name"]:
                raise HttpError(
                    400,
                    f"The name you provided is already being used by a model group with ID: {gid}.",
                )
        if "access_mode" in body and not (
            self.access_control and "opensearch-security" in self.plugins
        ):
            raise HttpError(
                400,
                "You cannot specify model access control parameters because the Security plugin "
                "or model access control is disabled on your cluster.",
            )
        gid = self._id("group")
        self.model_groups[gid] = {
            "name": body["name"],
            "description": body.get("description", ""),
            "access": body.get("access_mode", "private"),
        }
        return {"model_group_id": gid, "status": "CREATED"}

    def _get_group(self, id: str, **_: Any) -> Any:
        if id not in self.model_groups:
            raise HttpError(404, "Failed to find model group", "status_exception")
        group = self.model_groups[id]
        return {
            "name": group["name"],
            "description": group["description"],
            "latest_version": 0,
            "access": group["access"],
            "created_time": 1,
            "last_updated_time": 1,
        }

    def _update_group(self, id: str, body: Any, **_: Any) -> Any:
        if id not in self.model_groups:
            raise HttpError(404, "Failed to find model group", "status_exception")
        self.model_groups[id].update(
            {k: v for k, v in body.items() if k in ("name", "description")}
        )
        return {"status": "Updated"}

    def _delete_group(self, id: str, **_: Any) -> Any:
        if id not in self.model_groups:
            raise HttpError(404, "Failed to find model group", "status_exception")
        if any(m["model_group_id"] == id for m in self.models.values()):
            raise HttpError(
                409,
                "Cannot delete the model group when it has associated model versions",
                "status_exception",
            )
        del self.model_groups[id]
        return _deleted(".plugins-ml-model-group", id)

    def _search_groups(self, body: Any, **_: Any) -> Any:
        if not self.model_groups:
            raise HttpError(
                404, "no such index [.plugins-ml-model-group]", "index_not_found_exception"
            )
        return _search_response(self.model_groups, body)

    # --- connectors -------------------------------------------------------------------------

    def _check_url(self, connector: dict[str, Any]) -> None:
        url = connector["actions"][0]["url"]
        if not any(re.fullmatch(p, url) for p in self.effective(TRUSTED) or []):
            raise HttpError(400, "Connector URL is not matching the trusted endpoints regex")

    def _create_connector(self, body: Any, **_: Any) -> Any:
        self._check_url(body)
        if self.v >= Version(2, 19) and not body.get("credential"):
            # MLCreateConnectorInput, seen on the real 2.19.1 node (docs/contracts.md §7).
            raise HttpError(400, "Connector credential is null or empty list")
        cid = self._id("conn")
        self.connectors[cid] = copy.deepcopy(body)
        if self.v < Version(2, 13):  # HttpConnector.parse skips the unknown key
            self.connectors[cid].pop("client_config", None)
        return {"connector_id": cid}

    def _connector_view(self, cid: str) -> dict[str, Any]:
        c = copy.deepcopy(self.connectors[cid])
        c.pop("credential", None)  # GET and search never return it
        for action in c.get("actions", []):
            action["action_type"] = action["action_type"].upper()
        if self.v < Version(2, 13):  # no client_config in 2.12
            c["version"] = str(c.get("version", "1"))
            return c
        # 2.13 defaults are milliseconds (ConnectorClientConfig), later ones seconds.
        default_timeout = 30000 if self.v < Version(2, 14) else 30
        config: dict[str, Any] = {
            "max_connection": 30,
            "connection_timeout": default_timeout,
            "read_timeout": default_timeout,
        }
        if self.v >= Version(2, 15):
            config.update(
                {
                    "retry_backoff_millis": 200,
                    "retry_timeout_seconds": 30,
                    "max_retry_times": 0,
                    "retry_backoff_policy": "constant",
                }
            )
        config.update({k: v for k, v in (c.get("client_config") or {}).items() if k in config})
        c["client_config"] = config
        c["version"] = str(c.get("version", "1"))
        return c

    def _get_connector(self, id: str, **_: Any) -> Any:
        if id not in self.connectors:
            raise HttpError(404, "Failed to find connector", "status_exception")
        return self._connector_view(id)

    def _users(self, cid: str) -> list[str]:
        return [mid for mid, m in self.models.items() if m.get("connector_id") == cid]

    def _update_connector(self, id: str, body: Any, **_: Any) -> Any:
        if id not in self.connectors:
            raise HttpError(404, "Failed to find connector", "status_exception")
        deployed = [m for m in self._users(id) if self.models[m]["model_state"] in DEPLOYED]
        if deployed:
            raise HttpError(
                400,
                f"{len(deployed)} models are still using this connector, please undeploy the "
                f"models first: {deployed}",
                "status_exception",
            )
        connector = self.connectors[id]
        for key, value in body.items():
            if key == "parameters":
                connector.setdefault("parameters", {}).update(value)
            elif key == "credential":
                if value:
                    connector["credential"] = value
            elif key == "client_config" and self.v < Version(2, 13):
                continue
            else:
                connector[key] = copy.deepcopy(value)
        self._check_url(connector)
        return {
            "_index": ".plugins-ml-connector",
            "_id": id,
            "_version": 2,
            "result": "updated",
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": 1,
            "_primary_term": 1,
        }

    def _delete_connector(self, id: str, **_: Any) -> Any:
        if id not in self.connectors:
            raise HttpError(404, "Failed to find connector", "status_exception")
        users = self._users(id)
        if users:
            raise HttpError(
                409,
                f"{len(users)} models are still using this connector, please delete or update "
                f"the models first: {users}",
                "status_exception",
            )
        del self.connectors[id]
        return _deleted(".plugins-ml-connector", id)

    def _search_connectors(self, body: Any, **_: Any) -> Any:
        if not self.connectors:
            raise HttpError(
                404, "no such index [.plugins-ml-connector]", "index_not_found_exception"
            )
        return _search_response({cid: self._connector_view(cid) for cid in self.connectors}, body)

    # --- models -----------------------------------------------------------------------------

    def _register_model(self, body: Any, params: dict[str, str], **_: Any) -> Any:
        if body.get("connector_id") not in self.connectors:
            raise HttpError(400, "Failed to find connector", "status_exception")
        if body.get("model_group_id") not in self.model_groups:
            raise HttpError(400, "Failed to find model group", "status_exception")
        mid = self._id("model")
        self.models[mid] = {
            **copy.deepcopy(body),
            "model_state": "REGISTERED",
            "algorithm": "REMOTE",
        }
        return {"task_id": self._id("task"), "status": "CREATED", "model_id": mid}

    def _model(self, id: str) -> dict[str, Any]:
        if id not in self.models:
            raise HttpError(
                404, f"Failed to find model with the provided model id: {id}", "status_exception"
            )
        return self.models[id]

    def _get_model(self, id: str, **_: Any) -> Any:
        model = self._model(id)
        if model["model_state"] == "DEPLOYING":
            model["_polls"] = model.get("_polls", 0) + 1
            if model["_polls"] > self.deploy_polls:
                model["model_state"] = "DEPLOY_FAILED" if self.deploy_fails else "DEPLOYED"
        return {k: v for k, v in model.items() if not k.startswith("_")}

    def _deploy(self, id: str, **_: Any) -> Any:
        model = self._model(id)
        model["model_state"], model["_polls"] = "DEPLOYING", 0
        if self.deploy_polls == 0 and not self.deploy_fails:
            model["model_state"] = "DEPLOYED"
        return {"task_id": self._id("task"), "task_type": "DEPLOY_MODEL", "status": "CREATED"}

    def _undeploy(self, id: str, **_: Any) -> Any:
        self._model(id)["model_state"] = self.undeployed_state
        return {"node-1": {"stats": {id: "undeployed"}}}

    def _delete_model(self, id: str, **_: Any) -> Any:
        if self._model(id)["model_state"] in DEPLOYED:
            raise HttpError(
                400,
                "Model cannot be deleted in deploying or deployed state. Try undeploy model "
                "first then delete",
                "status_exception",
            )
        del self.models[id]
        return _deleted(".plugins-ml-model", id)

    def _search_models(self, body: Any, **_: Any) -> Any:
        if not self.models:
            raise HttpError(404, "no such index [.plugins-ml-model]", "index_not_found_exception")
        return _search_response(
            {
                k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                for k, v in self.models.items()
            },
            body,
        )

    # --- predictions: setup's connectors through the ML Commons stand-in ---------------------

    def predict(self, model_id: str, ml_input: dict[str, Any]) -> dict[str, Any]:
        model = self._model(model_id)
        if model["model_state"] != "DEPLOYED":
            raise HttpError(
                400,
                f"Model not ready yet. Please deploy the model first: {model_id}",
                "status_exception",
            )
        connector = self.connectors[model["connector_id"]]
        url = connector["actions"][0]["url"]
        if is_private_endpoint(url, resolve=False):
            if self.v < Version(2, 15) or str(self.effective(PRIVATE_IP)) != "true":
                raise HttpError(
                    400,
                    "Remote inference host name has private ip address",
                    "illegal_argument_exception",
                )
            private = self.effective(PRIVATE_REGEX) or []
            if private and not any(re.fullmatch(p, url) for p in private):
                raise HttpError(
                    400,
                    "Connector URL is not matching the trusted connector private endpoint regex",
                )
        try:
            return sim.predict(connector, ml_input, self.post, self.remote_calls)
        except MLCommonsError as exc:
            status = exc.args[1] if len(exc.args) > 1 else 400
            raise HttpError(status, str(exc.args[0]), "status_exception") from None

    def _predict_similarity(self, id: str, body: Any, **_: Any) -> Any:
        return self.predict(id, {"query_text": body["query_text"], "text_docs": body["text_docs"]})

    def _predict_remote(self, id: str, body: Any, **_: Any) -> Any:
        return self.predict(id, {"parameters": body["parameters"]})

    # --- search pipelines -------------------------------------------------------------------

    def _get_pipeline(self, id: str, **_: Any) -> Any:
        if id not in self.pipelines:
            raise HttpError(
                404, f"Search pipeline [{id}] not found", "resource_not_found_exception"
            )
        return {id: copy.deepcopy(self.pipelines[id])}

    def _put_pipeline(self, id: str, body: Any, **_: Any) -> Any:
        for processor in body.get("response_processors", []):
            ((kind, config),) = processor.items()
            if kind == "ml_inference" and self.v < Version(2, 16):
                raise HttpError(400, "Invalid processor type ml_inference")
            if kind == "rerank":
                if "opensearch-neural-search" not in self.plugins:
                    raise HttpError(400, "Invalid processor type rerank")
                if "by_field" in config and self.v < Version(2, 18):
                    raise HttpError(
                        400, "No rerank type found. Possible rerank types are: [ml_opensearch]"
                    )
        self.pipelines[id] = copy.deepcopy(body)
        return {"acknowledged": True}

    def _delete_pipeline(self, id: str, **_: Any) -> Any:
        if id not in self.pipelines:
            raise HttpError(
                404, f"Search pipeline [{id}] not found", "resource_not_found_exception"
            )
        if any(s.get("index.search.default_pipeline") == id for s in self.indices.values()):
            raise HttpError(
                400, f"Search pipeline [{id}] is used by indices", "illegal_argument_exception"
            )
        del self.pipelines[id]
        return {"acknowledged": True}

    # --- indices ----------------------------------------------------------------------------

    def _concrete(self, index: str) -> list[str]:
        if index in self.indices:
            return [index]
        if index in self.aliases:
            return list(self.aliases[index])
        if "*" in index:
            found = [n for n in self.indices if re.fullmatch(index.replace("*", ".*"), n)]
            if found:
                return found
        raise HttpError(404, f"no such index [{index}]", "index_not_found_exception")

    def _get_index_settings(self, index: str, **_: Any) -> Any:
        return {name: {"settings": dict(self.indices[name])} for name in self._concrete(index)}

    def _get_all_settings(self, name: str, **_: Any) -> Any:
        return {
            index: {"settings": {name: flat[name]}}
            for index, flat in self.indices.items()
            if name in flat
        }

    def _get_mapping(self, index: str, **_: Any) -> Any:
        return {
            n: {"mappings": {"properties": self.mappings.get(n, {})}} for n in self._concrete(index)
        }

    def _put_index_settings(self, index: str, body: Any, **_: Any) -> Any:
        for name in self._concrete(index):
            for key, value in body.items():
                if (
                    key == "index.search.default_pipeline"
                    and value not in (None, "_none")
                    and value not in self.pipelines
                ):
                    raise HttpError(400, f"Search pipeline [{value}] does not exist")
                if value is None:
                    self.indices[name].pop(key, None)
                else:
                    self.indices[name][key] = value
        return {"acknowledged": True}

    def _search(self, index: str, params: dict[str, str], body: Any, **_: Any) -> Any:
        """Hits in stored order with falling scores, then the pipeline, as a cluster would."""
        body = body or {}
        names = self._concrete(index)
        docs = [(name, doc) for name in names for doc in self.documents.get(name, [])]
        size = int(body.get("size", 10))
        start = int(body.get("from", 0))
        page = docs[start : start + size]
        hits = [
            {
                "_index": name,
                "_id": doc["_id"],
                "_score": round(1.0 - i * 0.1, 3),
                "_source": copy.deepcopy(doc["_source"]),
            }
            for i, (name, doc) in enumerate(page, start=start)
        ]
        response: dict[str, Any] = {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {
                "total": {"value": len(docs), "relation": "eq"},
                "max_score": hits[0]["_score"] if hits else None,
                "hits": hits,
            },
        }
        if body.get("track_total_hits") is False:
            del response["hits"]["total"]
        if "aggs" in body or "aggregations" in body:
            response["aggregations"] = {}
        pipeline_name = params.get("search_pipeline") or self.indices[names[0]].get(
            "index.search.default_pipeline"
        )
        if pipeline_name and pipeline_name != "_none":
            pipeline = self.pipelines[pipeline_name]

            def predictor(model_id: str, ml_input: dict[str, Any]) -> dict[str, Any]:
                try:
                    return self.predict(model_id, ml_input)
                except HttpError as exc:
                    raise MLCommonsError(exc.reason) from None

            # ml-commons 2.18.0/2.19.0 drop ml_inference's ignore_failure (docs/contracts.md §7).
            broken = frozenset({"ml_inference"}) if self.version in ("2.18.0", "2.19.0") else None
            try:
                response = sim.run_response_pipeline(
                    pipeline, body, response, predictor, self.pipeline_errors, broken
                )
            except Exception as exc:
                raise HttpError(
                    500, f"search pipeline failed: {exc!r}", "search_pipeline_exception"
                ) from None
        return response


def _deleted(index: str, id: str) -> dict[str, Any]:
    return {
        "_index": index,
        "_id": id,
        "_version": 2,
        "result": "deleted",
        "_shards": {"total": 1, "successful": 1, "failed": 0},
        "_seq_no": 2,
        "_primary_term": 1,
    }


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    ((kind, body),) = query.items()
    if kind == "match_all":
        return True
    if kind == "term":
        ((name, value),) = body.items()
        value = value.get("value") if isinstance(value, dict) else value
        return (
            doc.get(name[: -len(".keyword")]) if name.endswith(".keyword") else doc.get(name)
        ) == value
    if kind == "terms":
        ((name, values),) = body.items()
        return doc.get("_id" if name == "_id" else name) in values
    if kind == "exists":
        return body["field"] in doc
    if kind == "bool":
        must = body.get("must", [])
        must_not = body.get("must_not", [])
        must = must if isinstance(must, list) else [must]
        must_not = must_not if isinstance(must_not, list) else [must_not]
        return all(_matches(doc, q) for q in must) and not any(_matches(doc, q) for q in must_not)
    raise HttpError(400, f"query {kind} not simulated")


def _search_response(objects: dict[str, dict[str, Any]], body: Any) -> dict[str, Any]:
    query = (body or {}).get("query", {"match_all": {}})
    hits = [
        {
            "_index": ".plugins-ml",
            "_id": oid,
            "_version": 1,
            "_seq_no": 0,
            "_primary_term": 1,
            "_score": 1.0,
            "_source": copy.deepcopy(obj),
        }
        for oid, obj in objects.items()
        if _matches({**obj, "_id": oid}, query)
    ]
    return {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(hits), "relation": "eq"},
            "max_score": 1.0 if hits else None,
            "hits": hits,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenSearch

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw.strip() else None
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.fake.request_headers.append(headers)
        canned = getattr(self.fake, "raw_answers", {}).get(f"{self.command} {parts.path}")
        if canned is not None:
            self._send(*canned)
            return
        params = dict(parse_qsl(parts.query))
        if hasattr(self.fake, "handle_with_headers"):
            status, response = self.fake.handle_with_headers(
                self.command, parts.path, params, body, headers
            )
        else:
            status, response = self.fake.handle(self.command, parts.path, params, body)
        self._send(
            status,
            "application/json",
            json.dumps(response).encode(),
            getattr(self.fake, "response_headers", {}),
        )

    def _send(
        self,
        status: int,
        content_type: str,
        payload: bytes,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve(fake: Any) -> Iterator[str]:
    """Run `fake.handle` behind a real HTTP server on loopback; yields its URL."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
