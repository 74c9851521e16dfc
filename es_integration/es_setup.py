"""Elasticsearch setup, status and teardown: one `custom` rerank inference endpoint.

Elasticsearch has no default search pipeline, so clients opt in with the `text_similarity_reranker`
retriever; setup prints it. Facts (docs/contracts.md §3): the `custom` service exists from 8.19
and 9.1 (not 9.0), needs an Enterprise or trial licence, calls the sidecar once at creation
("test query", ["how big"]) and sends every window document with no `top_n`.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from es_integration.answers import as_object, optional_member
from es_integration.errors import Refused, SetupError, UnexpectedAnswer, UsageError, snippet
from es_integration.options import Options, endpoint_url, token_fingerprint
from es_integration.session import Session
from es_integration.transport import ApiError, Request, call, error_reason
from es_integration.versions import Version, es_supports_custom_service

MANAGED_HEADER = "X-Rerank-Managed-By"
MANAGED_VALUE = "rerank-sidecar es_integration"
FINGERPRINT_HEADER = "X-Rerank-Token-Fingerprint"
SECRET_KEY = "api_key"
# The 8.19 and 9.1 specifications mark `secret_parameters` required (docs/contracts.md §3), so it
# is always sent. Without a sidecar token this harmless value fills it; no header uses it then.
NO_SECRET = "unused"
RERANK_PATH = "/v1/rerank"
LICENSES = ("enterprise", "trial")
REQUESTS_PER_MINUTE = 10000
# The retriever's window when --rerank-window is not given (Elasticsearch's own default is 10).
DEFAULT_RANK_WINDOW = 50


def _endpoint_path(options: Options) -> str:
    return f"/_inference/rerank/{quote(options.names.inference_id, safe='')}"


def request_template(options: Options) -> str:
    """`${query}` arrives JSON-quoted and `${input}` as a JSON array: neither is quoted here."""
    instruction = (
        f', "instruction": {json.dumps(options.instruction)}' if options.instruction else ""
    )
    return '{"query": ${query}, "documents": ${input}' + instruction + "}"


def endpoint_body(options: Options) -> dict[str, Any]:
    assert options.sidecar_url is not None
    headers = {"Content-Type": "application/json", MANAGED_HEADER: MANAGED_VALUE}
    settings: dict[str, Any] = {
        "url": endpoint_url(options.sidecar_url, RERANK_PATH),
        "headers": headers,
        "request": request_template(options),
        "response": {
            "json_parser": {
                "reranked_index": "$.results[*].index",
                "relevance_score": "$.results[*].relevance_score",
            }
        },
        "rate_limit": {"requests_per_minute": REQUESTS_PER_MINUTE},
        "secret_parameters": {SECRET_KEY: options.sidecar_token or NO_SECRET},
    }
    if options.sidecar_token:
        headers["Authorization"] = "Bearer ${" + SECRET_KEY + "}"
        headers[FINGERPRINT_HEADER] = token_fingerprint(
            options.sidecar_token, options.names.inference_id
        )
    return {"service": "custom", "service_settings": settings}


def retriever_example(options: Options) -> dict[str, Any]:
    field = options.fields[0] if options.fields else "body"
    return {
        "retriever": {
            "text_similarity_reranker": {
                "retriever": {"standard": {"query": {"match": {field: "what the user typed"}}}},
                "field": field,
                "inference_id": options.names.inference_id,
                "inference_text": "what the user typed",
                # The top N of the inner retriever are reranked; from/size page through them.
                "rank_window_size": options.rerank_window or DEFAULT_RANK_WINDOW,
            }
        }
    }


def detect(session: Session) -> Version:
    info = call(session.t, "GET", "/").body
    about = optional_member(info, "version", dict, "GET /") or {}
    if about.get("distribution") == "opensearch":
        raise SetupError(
            "this cluster is OpenSearch; use `python -m es_integration opensearch ...`"
        )
    try:
        version = Version.parse(str(about["number"]))
    except (KeyError, ValueError):
        raise UnexpectedAnswer("GET /", "an Elasticsearch version number", info) from None
    if not es_supports_custom_service(version):
        raise SetupError(
            f"Elasticsearch {version} has no `custom` inference service: it needs 8.19 "
            "(8.x) or 9.1 and later (9.0 lacks it)"
        )
    licence_body = call(session.t, "GET", "/_license").body
    licence = optional_member(licence_body, "license", dict, "GET /_license") or {}
    kind, status = str(licence.get("type", "?")), str(licence.get("status", "?"))
    session.report.cluster = {"version": str(version), "license": f"{kind} ({status})"}
    if kind not in LICENSES or status != "active":
        raise SetupError(
            f"the licence is {kind!r} ({status}); the inference API and the "
            "text_similarity_reranker retriever need an active Enterprise or trial licence "
            "(POST /_license/start_trial?acknowledge=true starts a 30-day trial)"
        )
    return version


def _get_endpoint(session: Session) -> dict[str, Any] | None:
    path = _endpoint_path(session.options)
    response = call(session.t, "GET", path, allow=(404,))
    if not response.ok:
        return None
    endpoints = optional_member(response.body, "endpoints", list, f"GET {path}") or []
    return as_object(endpoints[0], f"GET {path}") if endpoints else None


def _service_settings(endpoint: dict[str, Any]) -> dict[str, Any]:
    settings = endpoint.get("service_settings")
    return settings if isinstance(settings, dict) else {}


def _comparable(endpoint: dict[str, Any]) -> dict[str, Any]:
    settings = _service_settings(endpoint)
    rate_limit = settings.get("rate_limit")
    return {
        "service": endpoint.get("service"),
        "url": settings.get("url"),
        "headers": settings.get("headers"),
        "request": settings.get("request"),
        "response": settings.get("response"),
        "requests_per_minute": (
            rate_limit.get("requests_per_minute") if isinstance(rate_limit, dict) else None
        ),
    }


def _is_managed(endpoint: dict[str, Any]) -> bool:
    headers = _service_settings(endpoint).get("headers")
    return isinstance(headers, dict) and headers.get(MANAGED_HEADER) == MANAGED_VALUE


def setup(session: Session) -> None:
    options, report = session.options, session.report
    if not options.sidecar_url:
        raise UsageError("setup needs --sidecar-url (the URL Elasticsearch uses to reach it)")
    if options.fields_by_language:
        raise UsageError("--fields-by-language is for OpenSearch; Elasticsearch reranks one field")
    detect(session)
    name = options.names.inference_id
    path = _endpoint_path(options)
    desired = endpoint_body(options)
    url = desired["service_settings"]["url"]
    current = _get_endpoint(session)
    if current is not None:
        if not _is_managed(current):
            raise SetupError(
                f"an inference endpoint {name!r} exists and was not made by this tool; "
                "choose another --name"
            )
        if _comparable(current) == _comparable(desired):
            report.add("inference endpoint", name, "unchanged", url)
            _usage(session)
            return
        # Secrets and most settings cannot be changed in place: replace the endpoint.
        if not session.confirm(f"Replace inference endpoint {name!r} with the new settings?"):
            raise Refused(f"inference endpoint {name!r} differs; re-run with --yes")
        call(session.t, "DELETE", path)
    response = session.t.request("PUT", path, body=desired)
    if not response.ok:
        raise ApiError(
            Request("PUT", path, {}, desired),
            response,
            "Elasticsearch calls the sidecar while creating the endpoint: check that "
            "--sidecar-url is reachable from the Elasticsearch nodes and the token matches",
        )
    report.add("inference endpoint", name, "created" if current is None else "updated", url)
    _usage(session)


def _usage(session: Session) -> None:
    options, report = session.options, session.report
    report.usage["search with reranking (text_similarity_reranker retriever)"] = retriever_example(
        options
    )
    if len(options.fields) > 1:
        report.note(
            "the retriever reranks on one field; combine several with copy_to into one field"
        )
    report.note(
        "Elasticsearch has no default search pipeline: clients opt in by sending the retriever"
    )


TEST_QUERY = "how tall is the eiffel tower"
TEST_DOCS = ["The Eiffel Tower is 330 metres tall.", "Bananas are rich in potassium."]


def _ranked_scores(body: Any) -> dict[int, float] | None:
    """index -> score from an inference answer (`{"rerank": [{index, relevance_score}]}`)."""
    try:
        return {int(item["index"]): float(item["relevance_score"]) for item in body["rerank"]}
    except (KeyError, TypeError, ValueError):
        return None


def status(session: Session) -> None:
    detect(session)
    report = session.report
    name = session.options.names.inference_id
    current = _get_endpoint(session)
    if current is None:
        report.add("inference endpoint", name, "absent", "setup has not run")
        report.ok = False
        return
    report.add("inference endpoint", name, "ok", str(_service_settings(current).get("url")))
    started = time.monotonic()
    response = session.t.request(
        "POST", _endpoint_path(session.options), body={"query": TEST_QUERY, "input": TEST_DOCS}
    )
    elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
    if not response.ok:
        detail = f"HTTP {response.status}: {error_reason(response.body)}"
        report.add("test rerank", name, "failed", detail)
        return
    scores = _ranked_scores(response.body)
    if scores is None:
        detail = f"no scores in the answer: {snippet(response.body)}"
        report.add("test rerank", name, "failed", detail)
        return
    good = sorted(scores) == list(range(len(TEST_DOCS)))
    report.add(
        "test rerank",
        name,
        "ok" if good else "failed",
        f"scores {[round(scores[i], 4) for i in sorted(scores)]} in {elapsed}",
    )


def teardown(session: Session) -> None:
    detect(session)
    name = session.options.names.inference_id
    current = _get_endpoint(session)
    if current is None:
        session.report.note("nothing to remove: no inference endpoint named " + repr(name))
        return
    if not _is_managed(current):
        session.report.add("inference endpoint", name, "skipped", "not made by this tool")
        return
    if not session.options.dry_run and not session.confirm(f"Delete inference endpoint {name!r}?"):
        raise Refused("teardown needs confirmation; re-run with --yes")
    call(session.t, "DELETE", _endpoint_path(session.options))
    session.report.add("inference endpoint", name, "deleted")
