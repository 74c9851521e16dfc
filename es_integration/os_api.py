"""The OpenSearch REST calls that setup, status and teardown make (paths as in the API spec)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from es_integration.answers import as_list, as_object, member, optional_member, text_id
from es_integration.errors import SetupError
from es_integration.transport import ApiError, Request, Response, Transport, call

DEFAULT_PIPELINE_SETTING = "index.search.default_pipeline"


def _q(part: str) -> str:
    return quote(part, safe="")


@dataclass(frozen=True)
class ClusterInfo:
    version: str
    distribution: str
    plugins: frozenset[str]


def cluster_info(t: Transport) -> ClusterInfo:
    info = call(t, "GET", "/").body
    version = member(info, "version", dict, "GET /")
    number = member(version, "number", str, "GET / (version)")
    distribution = optional_member(version, "distribution", str, "GET / (version)")
    plugins_body = call(t, "GET", "/_cat/plugins", params={"format": "json"}).body
    rows = as_list(plugins_body, "GET /_cat/plugins")
    plugins = frozenset(str(as_object(row, "GET /_cat/plugins").get("component")) for row in rows)
    return ClusterInfo(
        version=number, distribution=distribution or "elasticsearch", plugins=plugins
    )


def search_processors(t: Transport) -> tuple[frozenset[str], frozenset[str]]:
    """(request, response) search processor types that every node has."""
    what = "GET /_nodes/search_pipelines"
    nodes = member(call(t, "GET", "/_nodes/search_pipelines").body, "nodes", dict, what)

    def types(side: str) -> frozenset[str]:
        per_node = [
            {
                str(as_object(processor, what).get("type"))
                for processor in as_list(
                    as_object(as_object(node, what).get("search_pipelines", {}), what).get(
                        side, []
                    ),
                    what,
                )
            }
            for node in nodes.values()
        ]
        return frozenset(set.intersection(*per_node)) if per_node else frozenset()

    return types("request_processors"), types("response_processors")


@dataclass(frozen=True)
class ClusterSettings:
    persistent: dict[str, Any]
    transient: dict[str, Any]
    defaults: dict[str, Any]

    def exists(self, key: str) -> bool:
        """Registered in this version (present with its default, or set)."""
        return key in self.defaults or key in self.persistent or key in self.transient

    def scope_of(self, key: str) -> str:
        return "transient" if key in self.transient else "persistent"

    def effective(self, key: str) -> Any:
        for source in (self.transient, self.persistent, self.defaults):
            if key in source:
                return source[key]
        return None


def get_cluster_settings(t: Transport) -> ClusterSettings:
    body = call(
        t,
        "GET",
        "/_cluster/settings",
        params={"include_defaults": "true", "flat_settings": "true"},
    ).body
    what = "GET /_cluster/settings"
    return ClusterSettings(
        persistent=optional_member(body, "persistent", dict, what) or {},
        transient=optional_member(body, "transient", dict, what) or {},
        defaults=optional_member(body, "defaults", dict, what) or {},
    )


def put_cluster_settings(t: Transport, scope: str, values: dict[str, Any]) -> None:
    call(t, "PUT", "/_cluster/settings", body={scope: values})


def index_settings(t: Transport, index: str) -> dict[str, dict[str, Any]]:
    """Concrete index name -> flat settings; an alias or pattern expands to its indices."""
    response = t.request("GET", f"/{_q(index)}/_settings", params={"flat_settings": "true"})
    if response.status == 404:
        raise ApiError(
            Request("GET", f"/{index}/_settings"), response, f"index {index!r} does not exist"
        )
    if not response.ok:
        raise ApiError(Request("GET", f"/{index}/_settings"), response)
    return _settings_by_index(response.body, f"GET /{index}/_settings")


def _settings_by_index(body: Any, what: str) -> dict[str, dict[str, Any]]:
    return {
        name: optional_member(data, "settings", dict, what) or {}
        for name, data in as_object(body, what).items()
    }


def indices_using_pipeline(t: Transport, pipeline: str) -> list[str]:
    """Every index whose `index.search.default_pipeline` is `pipeline`."""
    path = f"/_settings/{DEFAULT_PIPELINE_SETTING}"
    body = call(t, "GET", path, params={"flat_settings": "true"}).body
    return sorted(
        name
        for name, flat in _settings_by_index(body, f"GET {path}").items()
        if flat.get(DEFAULT_PIPELINE_SETTING) == pipeline
    )


def text_fields(t: Transport, index: str, limit: int = 8) -> list[str]:
    """The `text` fields of an index mapping (dot paths, objects walked, multi-fields skipped)."""
    what = f"GET /{index}/_mapping"
    body = as_object(call(t, "GET", f"/{_q(index)}/_mapping").body, what)
    found: list[str] = []

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, spec in properties.items():
            if not isinstance(spec, dict):
                continue
            if spec.get("type") == "text":
                found.append(prefix + name)
            if isinstance(spec.get("properties"), dict):
                walk(spec["properties"], f"{prefix}{name}.")

    for data in body.values():
        mappings = optional_member(data, "mappings", dict, what) or {}
        walk(optional_member(mappings, "properties", dict, what) or {}, "")
        break  # the first concrete index speaks for an alias
    return found[:limit]


def put_index_default_pipeline(t: Transport, index: str, pipeline: str | None) -> None:
    call(
        t,
        "PUT",
        f"/{_q(index)}/_settings",
        body={"index.search.default_pipeline": pipeline},
    )


# ML Commons objects are found by exact name (`name.keyword`), never by id we do not know.


def _search(t: Transport, path: str, query: dict[str, Any]) -> list[dict[str, Any]]:
    response = t.request("POST", path, body={"query": query, "size": 100})
    if response.status == 404:  # the ML system index does not exist until first use
        return []
    if not response.ok:
        raise ApiError(Request("POST", path, {}, {"query": query}), response)
    what = f"POST {path}"
    hits = member(member(response.body, "hits", dict, what), "hits", list, what)
    return [
        {**(optional_member(hit, "_source", dict, what) or {}), "_id": text_id(hit, "_id", what)}
        for hit in hits
    ]


def find_model_groups(t: Transport, name: str) -> list[dict[str, Any]]:
    return _search(t, "/_plugins/_ml/model_groups/_search", {"term": {"name.keyword": name}})


def register_model_group(t: Transport, name: str, description: str, public: bool) -> str:
    body: dict[str, Any] = {"name": name, "description": description}
    if public:
        # Search users run the pipeline's models; a private group would refuse them.
        body["access_mode"] = "public"
    path = "/_plugins/_ml/model_groups/_register"
    return text_id(call(t, "POST", path, body=body).body, "model_group_id", f"POST {path}")


def model_group_description(t: Transport, group_id: str) -> str:
    """The description as stored now: a GET by id is real-time, a search is not."""
    path = f"/_plugins/_ml/model_groups/{_q(group_id)}"
    description = optional_member(call(t, "GET", path).body, "description", str, f"GET {path}")
    return description or ""


def update_model_group(t: Transport, group_id: str, description: str) -> None:
    call(t, "PUT", f"/_plugins/_ml/model_groups/{_q(group_id)}", body={"description": description})


def delete_model_group(t: Transport, group_id: str) -> None:
    call(t, "DELETE", f"/_plugins/_ml/model_groups/{_q(group_id)}", allow=(404,))


def find_connectors(t: Transport, name: str) -> list[dict[str, Any]]:
    return _search(t, "/_plugins/_ml/connectors/_search", {"term": {"name.keyword": name}})


def create_connector(t: Transport, body: dict[str, Any]) -> str:
    path = "/_plugins/_ml/connectors/_create"
    return text_id(call(t, "POST", path, body=body).body, "connector_id", f"POST {path}")


def get_connector(t: Transport, connector_id: str) -> dict[str, Any] | None:
    path = f"/_plugins/_ml/connectors/{connector_id}"
    response = call(t, "GET", f"/_plugins/_ml/connectors/{_q(connector_id)}", allow=(404,))
    return as_object(response.body, f"GET {path}") if response.ok else None


def update_connector(t: Transport, connector_id: str, body: dict[str, Any]) -> None:
    call(t, "PUT", f"/_plugins/_ml/connectors/{_q(connector_id)}", body=body)


def delete_connector(t: Transport, connector_id: str) -> None:
    call(t, "DELETE", f"/_plugins/_ml/connectors/{_q(connector_id)}", allow=(404,))


def find_models(t: Transport, name: str, group_id: str) -> list[dict[str, Any]]:
    query = {
        "bool": {
            "must": [{"term": {"name.keyword": name}}, {"term": {"model_group_id": group_id}}],
            # Chunks of uploaded local models share the name; remote models have none.
            "must_not": [{"exists": {"field": "chunk_number"}}],
        }
    }
    return _search(t, "/_plugins/_ml/models/_search", query)


def register_model(
    t: Transport, name: str, description: str, group_id: str, connector_id: str, wait_s: float
) -> str:
    body = {
        "name": name,
        "function_name": "remote",
        "description": description,
        "model_group_id": group_id,
        "connector_id": connector_id,
    }
    what = "POST /_plugins/_ml/models/_register"
    result = call(t, "POST", "/_plugins/_ml/models/_register", body=body).body
    if optional_member(result, "model_id", str, what):
        return text_id(result, "model_id", what)
    task = wait_task(t, text_id(result, "task_id", what), wait_s, "register model " + name)
    return text_id(task, "model_id", "GET /_plugins/_ml/tasks/<id>")


def get_model(t: Transport, model_id: str) -> dict[str, Any] | None:
    response = call(t, "GET", f"/_plugins/_ml/models/{_q(model_id)}", allow=(404,))
    return as_object(response.body, f"GET /_plugins/_ml/models/{model_id}") if response.ok else None


def model_state(t: Transport, model_id: str) -> str | None:
    """`model_state` of a model; None when the model does not exist."""
    model = get_model(t, model_id)
    if model is None:
        return None
    return optional_member(model, "model_state", str, f"GET /_plugins/_ml/models/{model_id}")


POLL_INTERVAL_S = 1.0


class DeployError(SetupError):
    """A model did not reach the wanted state, or an ML task failed."""


# After `_undeploy` a model serves nothing in any of these. A real 2.19.1 node left a model
# DEPLOY_FAILED, not UNDEPLOYED, after undeploying it (seen once in CI); it deletes all the same.
NOT_SERVING = frozenset({"UNDEPLOYED", "DEPLOY_FAILED", "REGISTERED", "CREATED"})


def wait_model_state(
    t: Transport, model_id: str, wanted: str, wait_s: float, also: frozenset[str] = frozenset()
) -> None:
    """Until the model is `wanted` (or in `also`)."""
    deadline = time.monotonic() + wait_s
    while True:
        state = model_state(t, model_id) or "?"
        if state == wanted or state in also:
            return
        if state == "DEPLOY_FAILED" and wanted == "DEPLOYED":
            raise DeployError(f"model {model_id} failed to deploy (model_state DEPLOY_FAILED)")
        if time.monotonic() >= deadline:
            raise DeployError(
                f"model {model_id} not {wanted} after {wait_s:.0f} s (model_state {state}); "
                "check the ML Commons logs, or raise --wait-timeout"
            )
        time.sleep(POLL_INTERVAL_S)


def deploy_model(t: Transport, model_id: str, wait_s: float) -> None:
    call(t, "POST", f"/_plugins/_ml/models/{_q(model_id)}/_deploy")
    wait_model_state(t, model_id, "DEPLOYED", wait_s)


def undeploy_model(t: Transport, model_id: str, wait_s: float) -> None:
    response = call(t, "POST", f"/_plugins/_ml/models/{_q(model_id)}/_undeploy", allow=(404,))
    if response.ok:
        wait_model_state(t, model_id, "UNDEPLOYED", wait_s, also=NOT_SERVING)


def delete_model(t: Transport, model_id: str) -> None:
    call(t, "DELETE", f"/_plugins/_ml/models/{_q(model_id)}", allow=(404,))


def wait_task(t: Transport, task_id: str, wait_s: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        task = as_object(
            call(t, "GET", f"/_plugins/_ml/tasks/{_q(task_id)}").body,
            f"GET /_plugins/_ml/tasks/{task_id}",
        )
        state = task.get("state")
        if state == "COMPLETED":
            return task
        if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
            raise DeployError(f"{what}: task {task_id} {state}: {task.get('error', '')}")
        if time.monotonic() >= deadline:
            raise DeployError(f"{what}: task {task_id} still {state} after {wait_s:.0f} s")
        time.sleep(POLL_INTERVAL_S)


def predict_text_similarity(t: Transport, model_id: str, query: str, docs: list[str]) -> Response:
    return t.request(
        "POST",
        f"/_plugins/_ml/_predict/text_similarity/{_q(model_id)}",
        body={"query_text": query, "text_docs": docs},
    )


def predict_remote(t: Transport, model_id: str, parameters: dict[str, str]) -> Response:
    return t.request(
        "POST", f"/_plugins/_ml/models/{_q(model_id)}/_predict", body={"parameters": parameters}
    )


def get_pipeline(t: Transport, name: str) -> dict[str, Any] | None:
    response = call(t, "GET", f"/_search/pipeline/{_q(name)}", allow=(404,))
    if not response.ok:
        return None
    return optional_member(response.body, name, dict, f"GET /_search/pipeline/{name}")


def put_pipeline(t: Transport, name: str, body: dict[str, Any]) -> None:
    call(t, "PUT", f"/_search/pipeline/{_q(name)}", body=body)


def delete_pipeline(t: Transport, name: str) -> None:
    call(t, "DELETE", f"/_search/pipeline/{_q(name)}", allow=(404,))
