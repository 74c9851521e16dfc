"""What OpenSearch does with the connectors and pipelines that setup registers, re-implemented.

No OpenSearch can run here, so the contract tests run setup's own JSON through this stand-in,
which follows the sources (files named in docs/connect-your-cluster.md, "Design notes"):

- ml-commons `RemoteConnectorExecutor.preparePayloadAndInvoke`, `ConnectorUtils.processInput /
  escapeRemoteInferenceInputData / processOutput`, `HttpConnector.createPayload`: parameters that
  are JSON objects/arrays are inserted raw, other strings escaped (commons-text escapeJson) but
  not quoted; `${parameters.x:-default}` defaults; unfilled placeholders fail before sending;
  `${credential.x}` in headers; Cohere pre/post-process functions (their scores become
  `similarity` tensors); a response without a post-process function becomes one tensor whose
  `dataAsMap` is the parsed JSON. The escaping, payload filling, gson, json-smart numbers and
  the Cohere functions themselves are the ones in `tests.support.ml_commons`.
- ml-commons `MLInferenceSearchResponseProcessor` (+ `ModelExecutor`): the request source is
  rendered as OpenSearch renders a SearchSourceBuilder (queries in their full form), `$._request.`
  paths read from it and serialised to JSON; document paths read per hit with JsonPath options
  SUPPRESS_EXCEPTIONS + DEFAULT_PATH_LEAF_TO_NULL; hits missing a document field are skipped;
  one_to_one=false sends one list per input, and a list output of the same length is split
  back per hit; one_to_one=true makes one call per hit.
- neural-search `RescoringRerankProcessor`, `ByFieldRerankProcessor`, `MLOpenSearchRerankProcessor`,
  `DocumentContextSourceFetcher`, `QueryContextSourceFetcher`.
- OpenSearch core search pipelines: a failing processor with `ignore_failure` passes the previous
  response on.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.ml_commons import (
    MLCommonsError,
    cohere_rerank_post_process,
    cohere_rerank_pre_process,
    create_payload,
    escape_parameters,
    gson,
)

HttpPost = Callable[[str, dict[str, str], bytes], tuple[int, bytes]]


def urllib_post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def parameter_map(values: dict[str, Any]) -> dict[str, str]:
    """StringUtils.getParameterMap: strings stay as they are, anything else becomes JSON."""
    return {k: v if isinstance(v, str) else gson(v) for k, v in values.items()}


# --- one predict call ------------------------------------------------------------------------


@dataclass
class RemoteCall:
    """What was sent: for assertions on the exact wire body."""

    url: str
    headers: dict[str, str]
    body: str
    status: int
    response: bytes


def predict(
    connector: dict[str, Any],
    ml_input: dict[str, Any],
    post: HttpPost,
    calls: list[RemoteCall] | None = None,
) -> dict[str, Any]:
    """One `_predict`: text_similarity input (`query_text`, `text_docs`) or remote
    `parameters`; returns the ModelTensorOutput as JSON (`inference_results`)."""
    action = connector["actions"][0]
    pre = action.get("pre_process_function")
    params: dict[str, str] = dict(connector.get("parameters") or {})
    if "parameters" in ml_input:  # RemoteInferenceInputDataSet (ml_inference, _predict)
        params.update(escape_parameters(dict(ml_input["parameters"])))
    elif "text_docs" in ml_input:
        if pre not in (
            "connector.pre_process.cohere.rerank",
            "connector.pre_process.default.rerank",
        ):
            raise MLCommonsError("pre_process_function not defined in connector")
        docs = list(ml_input["text_docs"])
        if not docs:
            raise MLCommonsError("Empty text docs")  # rejected before any HTTP call
        params.update(cohere_rerank_pre_process(ml_input["query_text"], docs))
    else:
        raise MLCommonsError(f"unsupported input {sorted(ml_input)}")
    payload = create_payload(action["request_body"], params)
    headers = {
        key: re.sub(
            r"\$\{credential\.([A-Za-z0-9_]+)\}",
            lambda m: str(connector.get("credential", {})[m.group(1)]),
            value,
        )
        for key, value in (action.get("headers") or {}).items()
    }
    headers.setdefault("Content-Type", "application/json")
    status, raw = post(action["url"], headers, payload.encode())
    if calls is not None:
        calls.append(RemoteCall(action["url"], headers, payload, status, raw))
    if not 200 <= status < 300:
        raise MLCommonsError(f"Error from remote service: {raw.decode(errors='replace')}", status)
    if not raw:
        raise MLCommonsError("empty response body (502)")
    post_fn = action.get("post_process_function")
    if post_fn == "connector.post_process.cohere.rerank":
        tensors = [
            {"name": "similarity", "data_type": "FLOAT32", "shape": [1], "data": [score]}
            for score in cohere_rerank_post_process(raw)
        ]
    elif post_fn is None:
        tensors = [{"name": "response", "dataAsMap": json.loads(raw)}]
    else:
        raise MLCommonsError(f"post-process {post_fn} not simulated")
    return {"inference_results": [{"output": tensors, "status_code": 200}]}


# --- JsonPath, the subset setup's pipelines use -----------------------------------------------

_MULTI = re.compile(r"^\$\[((?:'[^']*',?)+)\]$")


class PathError(Exception):
    pass


def read_path(data: Any, path: str) -> Any:
    """Jayway JsonPath read with SUPPRESS_EXCEPTIONS and DEFAULT_PATH_LEAF_TO_NULL (missing ->
    None). Supports `$`, `$.a.b`, `a.b`, `a[0]`, and the multi-property leaf `$['a','b']` (an
    object of the named properties, missing ones null). Anything else raises, so a pipeline that
    starts using another form fails its test instead of passing by accident."""
    if path == "$":
        return data
    multi = _MULTI.match(path)
    if multi:
        names = re.findall(r"'([^']*)'", multi.group(1))
        if len(names) == 1:
            return data.get(names[0]) if isinstance(data, dict) else None
        if not isinstance(data, dict):
            return None
        return {name: data.get(name) for name in names}
    if path.startswith("$."):
        path = path[2:]
    elif path.startswith("$"):
        raise PathError(f"JsonPath form not simulated: {path}")
    current = data
    for part in path.split("."):
        match = re.fullmatch(r"([^\[\]]+)((?:\[\d+\])*)", part)
        if match is None:
            raise PathError(f"JsonPath form not simulated: {path}")
        current = current.get(match.group(1)) if isinstance(current, dict) else None
        for index in re.findall(r"\[(\d+)\]", match.group(2)):
            current = (
                current[int(index)]
                if isinstance(current, list) and int(index) < len(current)
                else None
            )
    return current


# --- the request as `request.source().toString()` renders it ---------------------------------

_MATCH_DEFAULTS = {
    "operator": "OR",
    "prefix_length": 0,
    "max_expansions": 50,
    "fuzzy_transpositions": True,
    "lenient": False,
    "zero_terms_query": "NONE",
    "auto_generate_synonyms_phrase_query": True,
    "boost": 1.0,
}


def render_query(query: Any) -> Any:
    """Queries in the full form OpenSearch's toXContent writes (defaults filled in, bool clauses
    as arrays), for the shapes the tests use."""
    if not isinstance(query, dict) or len(query) != 1:
        return query
    ((kind, body),) = query.items()
    if kind in ("match", "match_phrase") and isinstance(body, dict) and len(body) == 1:
        ((field, value),) = body.items()
        spec = dict(value) if isinstance(value, dict) else {"query": value}
        if kind == "match":
            spec = {**spec, **{k: v for k, v in _MATCH_DEFAULTS.items() if k not in spec}}
        else:
            spec = {"slop": 0, "zero_terms_query": "NONE", "boost": 1.0, **spec}
        return {kind: {field: spec}}
    if kind == "multi_match":
        fields = [f if "^" in f else f + "^1.0" for f in body.get("fields", [])]
        return {kind: {"type": "best_fields", **body, "fields": fields, "boost": 1.0}}
    if kind in ("query_string", "simple_query_string"):
        return {kind: {**body, "default_operator": "or", "boost": 1.0}}
    if kind == "bool":
        out: dict[str, Any] = {}
        for clause in ("must", "filter", "must_not", "should"):
            if clause in body:
                items = body[clause] if isinstance(body[clause], list) else [body[clause]]
                out[clause] = [render_query(item) for item in items]
        out.update({"adjust_pure_negative": True, "boost": 1.0})
        return {"bool": out}
    return query


def render_source(search_body: dict[str, Any]) -> str:
    rendered = {k: v for k, v in search_body.items() if k != "aggs"}
    if "aggs" in search_body:
        rendered["aggregations"] = search_body["aggs"]
    if "query" in rendered:
        rendered["query"] = render_query(rendered["query"])
    return json.dumps(rendered)


# --- search response processors --------------------------------------------------------------

Predictor = Callable[[str, dict[str, Any]], dict[str, Any]]  # (model_id, MLInput) -> output


def _output_value(output: dict[str, Any], path: str | None, ignore_missing: bool) -> Any:
    """ModelExecutor.getModelOutputValue for a remote model (full_response_path false)."""
    tensors = output["inference_results"][0]["output"]
    values = []
    for tensor in tensors:
        data_map = tensor.get("dataAsMap")
        if data_map is None:
            values.append([float(x) for x in tensor["data"]])
            continue
        if path is None:
            values.append(data_map)
        elif path in data_map:
            values.append(data_map[path])
        else:
            value = read_path(data_map, path)
            if value is None and not ignore_missing:
                raise MLCommonsError(f"model inference output cannot find field name: {path}")
            values.append(value if value is not None else data_map)
    return values[0] if len(values) == 1 else values


def ml_inference(
    config: dict[str, Any], request: dict[str, Any], response: dict[str, Any], predict: Predictor
) -> dict[str, Any]:
    hits = response["hits"]["hits"]
    if not hits:
        return response
    query_string = render_source(request)
    if config.get("one_to_one"):
        out = copy.deepcopy(response)
        out["hits"]["hits"] = []
        for hit in hits:
            single = copy.deepcopy(response)
            single["hits"]["hits"] = [hit]
            out["hits"]["hits"].extend(
                _ml_inference_batch(config, query_string, single, predict)["hits"]["hits"]
            )
        return out
    return _ml_inference_batch(config, query_string, response, predict)


def _is_request_path(path: str) -> bool:
    return path.startswith(("$._request.", "_request."))


def _ml_inference_batch(
    config: dict[str, Any], query_string: str, response: dict[str, Any], predict: Predictor
) -> dict[str, Any]:
    one_to_one = bool(config.get("one_to_one"))
    ignore_missing = bool(config.get("ignore_missing"))
    request_data = json.loads(query_string)
    input_map = config["input_map"][0]
    output_map = config["output_map"][0]
    for path in input_map.values():
        if (
            _is_request_path(path)
            and read_path(request_data, "$." + path.split("_request.", 1)[1]) is None
        ) and not ignore_missing:
            raise MLCommonsError(f"Missing required input field in query body: {path}")
    values: dict[str, Any] = dict(config.get("model_config") or {})
    count = 0
    for hit in response["hits"]["hits"]:
        source = hit.get("_source")
        doc_paths = [p for p in input_map.values() if not _is_request_path(p)]
        if source is None or any(read_path(source, p) is None for p in doc_paths):
            continue
        count += 1
        for name, path in input_map.items():
            if _is_request_path(path):
                if name not in values:
                    value = read_path(request_data, "$." + path.split("_request.", 1)[1])
                    if value is not None:
                        values[name] = value if isinstance(value, str) else gson(value)
            else:
                value = read_path(source, path)
                if one_to_one:
                    values[name] = value
                else:
                    values.setdefault(name, []).append(value)
    output = predict(config["model_id"], {"parameters": parameter_map(values)})
    result = copy.deepcopy(response)
    written = 0
    for hit in result["hits"]["hits"]:
        source = hit.get("_source")
        doc_paths = [p for p in input_map.values() if not _is_request_path(p)]
        if source is None or any(read_path(source, p) is None for p in doc_paths):
            continue
        for field_name, path in output_map.items():
            value = _output_value(output, path, ignore_missing)
            if isinstance(value, list) and len(value) == count and not one_to_one:
                value = value[written]
            if field_name not in source or config.get("override"):
                source[field_name] = value
        written += 1
    return result


def by_field(config: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    total = response["hits"].get("total")
    if total is None:
        raise MLCommonsError("NullPointerException: total hits not tracked")
    if total["value"] == 0:
        return response
    target = config["target_field"]
    result = copy.deepcopy(response)
    hits = result["hits"]["hits"]
    for hit in hits:
        source = hit.get("_source")
        if source is None:
            raise MLCommonsError(
                f"There is no source field to be able to perform rerank on hit [{hit['_id']}]"
            )
        value = read_path(source, target)
        if value is None:
            raise MLCommonsError(f"The field to rerank by is not found at hit [{hit['_id']}]")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise MLCommonsError(f"The field mapping to rerank by [{value}] is not Numerical")
    for hit in hits:
        source = hit["_source"]
        hit["_score"] = float(source[target])
        if config.get("keep_previous_score"):
            source[config.get("previous_score_field", "previous_score")] = hit["_score"]
        if config.get("remove_target_field"):
            del source[target]
    hits.sort(key=lambda h: -h["_score"])  # stable, like Collections.sort
    result["hits"]["max_score"] = hits[0]["_score"]  # IndexError on no hits, as in Java
    return result


def _document_text(source: dict[str, Any], fields: list[str]) -> str:
    """DocumentContextSourceFetcher: dot path per field, lists joined by a space, no separator."""
    parts = []
    for name in fields:
        value = read_path(source, name)
        if isinstance(value, list):
            parts.append(" ".join(str(v) for v in value))
        elif value is not None:
            parts.append(str(value))
    return "".join(parts)


def ml_opensearch(
    config: dict[str, Any],
    request: dict[str, Any],
    response: dict[str, Any],
    predict: Predictor,
) -> dict[str, Any]:
    context = (request.get("ext") or {}).get("rerank", {}).get("query_context")
    if context is None:
        raise MLCommonsError("NullPointerException: no ext.rerank in the search request")
    query_text = context.get("query_text")
    if query_text is None:
        query_text = read_path(request, context["query_text_path"])
    hits = response["hits"]["hits"]
    docs = [
        _document_text(hit.get("_source") or {}, config["context"]["document_fields"])
        for hit in hits
    ]
    output = predict(
        config["ml_opensearch"]["model_id"], {"query_text": query_text, "text_docs": docs}
    )
    scores = [float(t["data"][0]) for t in output["inference_results"][0]["output"]]
    if len(scores) != len(hits):
        raise MLCommonsError("scores and hits are not the same length")
    result = copy.deepcopy(response)
    for hit, score in zip(result["hits"]["hits"], scores, strict=True):
        hit["_score"] = score
    result["hits"]["hits"].sort(key=lambda h: -h["_score"])
    result["hits"]["max_score"] = result["hits"]["hits"][0]["_score"]
    return result


def run_response_pipeline(
    pipeline: dict[str, Any],
    request: dict[str, Any],
    response: dict[str, Any],
    predict: Predictor,
    errors: list[str] | None = None,
    ignore_failure_dropped: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Core search pipelines: processors in order; an ignored failure keeps the previous one.

    `ignore_failure_dropped`: processor types whose factory loses `ignore_failure` (ml_inference
    on ml-commons 2.18.0 and 2.19.0), so their failures always fail the search.
    """
    for processor in pipeline.get("response_processors", []):
        ((kind, config),) = processor.items()
        try:
            if kind == "ml_inference":
                response = ml_inference(config, request, response, predict)
            elif kind == "rerank" and "by_field" in config:
                response = by_field(config["by_field"], response)
            elif kind == "rerank" and "ml_opensearch" in config:
                response = ml_opensearch(config, request, response, predict)
            else:
                raise MLCommonsError(f"processor {kind} not simulated")
        except (MLCommonsError, IndexError, KeyError, TypeError) as exc:
            if errors is not None:
                errors.append(f"{kind}: {exc!r}")
            if not config.get("ignore_failure") or kind in (ignore_failure_dropped or ()):
                raise
    return response
