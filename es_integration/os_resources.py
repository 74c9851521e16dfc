"""The OpenSearch objects setup creates, as pure functions of the options and cluster version.

Why each value is what it is: docs/contracts.md (wire and version facts) and
docs/connect-your-cluster.md ("Design notes").
"""

from __future__ import annotations

import json
from typing import Any

from es_integration import MANAGED_MARKER
from es_integration.options import Options, Timeouts, endpoint_url
from es_integration.versions import (
    OS_CLIENT_CONFIG,
    OS_CLIENT_CONFIG_SECONDS,
    OS_CONNECTOR_RETRY,
    Version,
)

RERANK_PATH = "/v1/rerank"  # Cohere-shaped contract (docs/contracts.md §2)
QUERY_DSL_PATH = "/v1/rerank/query-dsl"  # sidecar/routes_query_dsl.py
WINDOW_PATH = "/v1/rerank/window"  # sidecar/routes_query_dsl.py, sidecar/rerank_window.py
SCORE_FIELD = "rerank_sidecar_score"  # written by ml_inference, read and removed by by_field
CREDENTIAL_KEY = "sidecar_token"


def managed(description: str) -> str:
    return f"{MANAGED_MARKER}: {description}"


def is_managed(description: Any) -> bool:
    return isinstance(description, str) and description.startswith(MANAGED_MARKER)


def client_config(timeouts: Timeouts, version: Version) -> dict[str, Any] | None:
    """The connector's client_config for this version (docs/contracts.md §7), None on 2.12,
    which has none (it would drop the key, and every re-run would see a difference)."""
    if version < OS_CLIENT_CONFIG:
        return None
    # 2.13 hands the timeouts to Apache HttpClient as milliseconds; seconds from 2.14.
    unit = 1000 if version < OS_CLIENT_CONFIG_SECONDS else 1
    # Both timeouts always set: before 3.6 an unset one meant 30000 s (30 s on 2.13).
    config: dict[str, Any] = {
        "max_connection": timeouts.max_connections,
        "connection_timeout": timeouts.connect_s * unit,
        "read_timeout": timeouts.read_s * unit,
    }
    if version >= OS_CONNECTOR_RETRY:
        config.update(
            {
                "max_retry_times": timeouts.max_retries,
                "retry_backoff_policy": "exponential_full_jitter",
                "retry_backoff_millis": timeouts.retry_backoff_ms,
                "retry_timeout_seconds": timeouts.retry_timeout_s,
            }
        )
    return config


def _headers(options: Options) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if options.sidecar_token:
        headers["Authorization"] = "Bearer ${credential." + CREDENTIAL_KEY + "}"
    return headers


# ML Commons refuses to create a connector whose credential is empty ("Connector credential is
# null or empty list", seen on a real 2.19.1 node); without a token this value is never sent.
NO_TOKEN_PLACEHOLDER = "no-token"


def _credential(options: Options) -> dict[str, str]:
    return {CREDENTIAL_KEY: options.sidecar_token or NO_TOKEN_PLACEHOLDER}


def _instruction_fragment(options: Options) -> str:
    # A literal in the template: connector parameters are substituted without escaping.
    return f', "instruction": {json.dumps(options.instruction)}' if options.instruction else ""


def rerank_request_body(options: Options) -> str:
    """Filled by connector.pre_process.cohere.rerank: query (escaped, unquoted), documents (raw
    JSON array), top_n (number)."""
    return (
        '{ "query": "${parameters.query}", "documents": ${parameters.documents}, '
        '"top_n": ${parameters.top_n}' + _instruction_fragment(options) + " }"
    )


def query_dsl_request_body(options: Options) -> str:
    """Filled by ml_inference: `query` is the JSON object read from `$._request.query` and
    `documents` a JSON array (one_to_one=false) or one JSON object (true); both are JSON, so
    ML Commons inserts them raw."""
    documents = "[${parameters.documents}]" if options.one_to_one else "${parameters.documents}"
    by_language = (
        f', "fields_by_language": {json.dumps(options.fields_by_language)}'
        if options.fields_by_language
        else ""
    )
    # The page as the client asked for it ($._request is the search before request processors).
    window = (
        ', "page": { '
        + "".join(f'"{key}": ${{parameters.{name}}}, ' for name, key in WINDOW_INPUTS.items())
        + window_settings(options)
        + " }"
        if options.rerank_window
        else ""
    )
    return (
        '{ "query": ${parameters.query}, "sort": ${parameters.sort}, "documents": '
        + documents
        + ", "
        '"fields": '
        + json.dumps(options.fields_by_language.get("default", options.fields))
        + by_language
        + window
        + _instruction_fragment(options)
        + " }"
    )


def _sidecar_connector(
    options: Options,
    version: Version,
    *,
    name: str,
    purpose: str,
    path: str,
    request_body: str,
    functions: dict[str, str],
) -> dict[str, Any]:
    assert options.sidecar_url is not None
    connector: dict[str, Any] = {
        "name": name,
        "description": managed(purpose),
        "version": 1,
        "protocol": "http",
        "parameters": {},
        "credential": _credential(options),
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": endpoint_url(options.sidecar_url, path),
                "headers": _headers(options),
                "request_body": request_body,
                **functions,
            }
        ],
    }
    config = client_config(options.timeouts, version)
    if config is not None:
        connector["client_config"] = config
    return connector


def rerank_connector(options: Options, version: Version) -> dict[str, Any]:
    return _sidecar_connector(
        options,
        version,
        name=options.names.rerank_connector,
        purpose="Cohere-shaped rerank calls to the sidecar (ml_opensearch)",
        path=RERANK_PATH,
        request_body=rerank_request_body(options),
        functions={
            "pre_process_function": "connector.pre_process.cohere.rerank",
            "post_process_function": "connector.post_process.cohere.rerank",
        },
    )


# Defaults for what a search may lack: with `ignore_missing`, ml_inference leaves out the input
# of an absent request path, and an unfilled placeholder would fail the call (docs/contracts.md).
QUERY_DSL_DEFAULTS = {"query": "null", "sort": "null"}
# What of the client's search the window decision reads: parameter name -> the search's key.
WINDOW_INPUTS = {
    "from": "from",
    "size": "size",
    "search_after": "search_after",
    "track_total_hits": "track_total_hits",
    "source": "_source",
}
WINDOW_DEFAULTS = dict.fromkeys(WINDOW_INPUTS, "null")


def window_settings(options: Options) -> str:
    """The set-up's part of both window calls: the window and the connector's read timeout."""
    return f'"window": {options.rerank_window}, "budget_s": {options.timeouts.read_s}'


def query_dsl_connector(options: Options, version: Version) -> dict[str, Any]:
    # No post-process function: ml_inference reads `scores` from the raw response (dataAsMap).
    connector = _sidecar_connector(
        options,
        version,
        name=options.names.dsl_connector,
        purpose="query-DSL rerank calls to the sidecar (ml_inference)",
        path=QUERY_DSL_PATH,
        request_body=query_dsl_request_body(options),
        functions={},
    )
    connector["parameters"] = {
        **QUERY_DSL_DEFAULTS,
        **(WINDOW_DEFAULTS if options.rerank_window else {}),
    }
    return connector


def window_connector(options: Options, version: Version) -> dict[str, Any]:
    """Calls of the window request processor: the whole search body (`$`, so a search without
    `from` or `query` still reads) and the window size, a literal of this set-up."""
    assert options.rerank_window is not None
    return _sidecar_connector(
        options,
        version,
        name=options.names.window_connector,
        purpose="rerank-window rewrites of searches (ml_inference request processor)",
        path=WINDOW_PATH,
        request_body='{ "search": ${parameters.search}, ' + window_settings(options) + " }",
        functions={},
    )


def document_selector(fields: list[str]) -> str:
    """The ml_inference input path that reads each hit's text fields.

    Top-level fields: a multi-property JsonPath plus the (absent) score field, so JsonPath always
    returns an object; a hit missing every field still gets a score (of empty text) and the
    score list stays aligned with the hits. Nested fields: the whole `_source` (`$`); the sidecar
    picks the dot paths listed in the connector's `fields`.
    """
    if any("." in name for name in fields):
        return "$"
    names = [*fields, SCORE_FIELD]
    return "$[" + ",".join(f"'{name}'" for name in names) + "]"


def window_request_processors(window_model_id: str) -> list[dict[str, Any]]:
    """Fetch the window, remember the page (sidecar/rerank_window.py has the whole design)."""
    return [
        {
            # Factor 1: size is unchanged, but truncate_hits now knows what the client asked
            # for (original_size), and size is always written out (for the rewrite below).
            "oversample": {"tag": "rerank-sidecar-page-size", "sample_factor": 1.0}
        },
        {
            "ml_inference": {
                "tag": "rerank-sidecar-window",
                "description": "fetch the window from the top; response processors cut the page",
                "model_id": window_model_id,
                "function_name": "remote",
                "input_map": [{"search": "$"}],
                # `from` is written only where the search has one (absent means 0 anyway).
                "output_map": [{"from": "from", "size": "size"}],
                "full_response_path": False,
                "ignore_missing": True,
                # Sidecar down: the search runs as sent and the client gets its usual page.
                "ignore_failure": True,
            }
        },
    ]


def ml_inference_pipeline(
    options: Options, dsl_model_id: str, window_model_id: str | None = None
) -> dict[str, Any]:
    window_input = (
        {name: f"$._request.{key}" for name, key in WINDOW_INPUTS.items()}
        if window_model_id
        else {}
    )
    pipeline: dict[str, Any] = {
        "description": managed(
            "reranks the hits of plain query-DSL searches through the sidecar "
            "(ml_inference writes a score, rerank by_field sorts by it)"
            + (f"; the top {options.rerank_window} are reranked" if window_model_id else "")
        ),
        "response_processors": [
            {
                "ml_inference": {
                    "tag": "rerank-sidecar-score",
                    "description": "score each hit against the query text of the request",
                    "model_id": dsl_model_id,
                    "function_name": "remote",
                    "input_map": [
                        {
                            "query": "$._request.query",
                            # A sorted search is answered 422 client_sort and keeps its order.
                            "sort": "$._request.sort",
                            "documents": document_selector(options.fields),
                            **window_input,
                        }
                    ],
                    "output_map": [
                        {SCORE_FIELD: "$.scores[0]" if options.one_to_one else "scores"}
                    ],
                    "full_response_path": False,
                    # A request without `query` or `sort` sends null (QUERY_DSL_DEFAULTS); the
                    # sidecar's 422 for it is passed over by ignore_failure.
                    "ignore_missing": True,
                    "ignore_failure": True,
                    "override": True,
                    "one_to_one": options.one_to_one,
                }
            },
            {
                "rerank": {
                    "tag": "rerank-sidecar-sort",
                    "by_field": {
                        "target_field": SCORE_FIELD,
                        "remove_target_field": True,
                        "keep_previous_score": False,
                    },
                    # size:0, track_total_hits:false or a failed scoring: hits pass untouched.
                    "ignore_failure": True,
                }
            },
        ],
    }
    if window_model_id:
        pipeline["request_processors"] = window_request_processors(window_model_id)
        # No target_size: the client's size, recorded by oversample.
        pipeline["response_processors"].append(
            {"truncate_hits": {"tag": "rerank-sidecar-page", "ignore_failure": True}}
        )
    return pipeline


def ml_opensearch_pipeline(options: Options, rerank_model_id: str) -> dict[str, Any]:
    return {
        "description": managed(
            "reranks through the sidecar when the search sends ext.rerank.query_context "
            "(other searches pass through un-reranked)"
        ),
        "response_processors": [
            {
                "rerank": {
                    "tag": "rerank-sidecar-ext",
                    "ml_opensearch": {"model_id": rerank_model_id},
                    "context": {"document_fields": list(options.fields)},
                    # Without ext.rerank the processor fails; unchanged clients keep their hits.
                    "ignore_failure": True,
                }
            }
        ],
    }


def ext_rerank_example(options: Options) -> dict[str, Any]:
    field = options.fields[0] if options.fields else "body"
    return {
        "query": {"match": {field: "what the user typed"}},
        "ext": {"rerank": {"query_context": {"query_text": "what the user typed"}}},
    }
