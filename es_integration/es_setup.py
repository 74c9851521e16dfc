"""Elasticsearch setup, status and teardown: one `custom` rerank inference endpoint.

Elasticsearch has no default search pipeline, so clients opt in with the `text_similarity_reranker`
retriever; setup prints it. Facts (CONTRACTS.md §3): the `custom` service exists from 8.19 and 9.1
(not 9.0), needs an Enterprise or trial licence, calls the sidecar once at creation ("test query",
["how big"]) and sends every window document with no `top_n`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from es_integration.options import Options, UsageError, endpoint_url, token_fingerprint
from es_integration.os_setup import Confirm, Refused, SetupError
from es_integration.report import Report
from es_integration.transport import ApiError, Request, Transport, call, error_reason
from es_integration.versions import Version, es_supports_custom_service

MANAGED_HEADER = "X-Rerank-Managed-By"
MANAGED_VALUE = "rerank-sidecar es_integration"
FINGERPRINT_HEADER = "X-Rerank-Token-Fingerprint"
SECRET_KEY = "api_key"
RERANK_PATH = "/v1/rerank"
LICENSES = ("enterprise", "trial")
REQUESTS_PER_MINUTE = 10000


@dataclass
class EsRun:
    t: Transport
    options: Options
    report: Report
    confirm: Confirm
    version: Version = field(default_factory=lambda: Version(0, 0))


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
    }
    if options.sidecar_token:
        headers["Authorization"] = "Bearer ${" + SECRET_KEY + "}"
        headers[FINGERPRINT_HEADER] = token_fingerprint(
            options.sidecar_token, options.names.inference_id
        )
        settings["secret_parameters"] = {SECRET_KEY: options.sidecar_token}
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
                "rank_window_size": 50,
            }
        }
    }


def detect(run: EsRun) -> None:
    info = call(run.t, "GET", "/").body
    version = info.get("version", {}) if isinstance(info, dict) else {}
    if version.get("distribution") == "opensearch":
        raise SetupError(
            "this cluster is OpenSearch; use `python -m es_integration opensearch ...`"
        )
    run.version = Version.parse(str(version.get("number", "0.0.0")))
    if not es_supports_custom_service(run.version):
        raise SetupError(
            f"Elasticsearch {run.version} has no `custom` inference service: it needs 8.19 "
            "(8.x) or 9.1 and later (9.0 lacks it)"
        )
    licence = call(run.t, "GET", "/_license").body.get("license", {})
    kind, status = str(licence.get("type", "?")), str(licence.get("status", "?"))
    run.report.cluster = {"version": str(run.version), "license": f"{kind} ({status})"}
    if kind not in LICENSES or status != "active":
        raise SetupError(
            f"the licence is {kind!r} ({status}); the inference API and the "
            "text_similarity_reranker retriever need an active Enterprise or trial licence "
            "(POST /_license/start_trial?acknowledge=true starts a 30-day trial)"
        )


def _get_endpoint(run: EsRun) -> dict[str, Any] | None:
    response = call(run.t, "GET", _endpoint_path(run.options), allow=(404,))
    if not response.ok:
        return None
    endpoints = response.body.get("endpoints", [])
    return dict(endpoints[0]) if endpoints else None


def _comparable(endpoint: dict[str, Any]) -> dict[str, Any]:
    settings = endpoint.get("service_settings", {})
    return {
        "service": endpoint.get("service"),
        "url": settings.get("url"),
        "headers": settings.get("headers"),
        "request": settings.get("request"),
        "response": settings.get("response"),
        "requests_per_minute": settings.get("rate_limit", {}).get("requests_per_minute"),
    }


def _is_managed(endpoint: dict[str, Any]) -> bool:
    headers = endpoint.get("service_settings", {}).get("headers") or {}
    return bool(headers.get(MANAGED_HEADER) == MANAGED_VALUE)


def setup(run: EsRun) -> None:
    if not run.options.sidecar_url:
        raise UsageError("setup needs --sidecar-url (the URL Elasticsearch uses to reach it)")
    detect(run)
    name = run.options.names.inference_id
    desired = endpoint_body(run.options)
    current = _get_endpoint(run)
    if current is not None:
        if not _is_managed(current):
            raise SetupError(
                f"an inference endpoint {name!r} exists and was not made by this tool; "
                "choose another --name"
            )
        if _comparable(current) == _comparable(desired):
            run.report.add(
                "inference endpoint", name, "unchanged", desired["service_settings"]["url"]
            )
            _usage(run)
            return
        # Secrets and most settings cannot be changed in place: replace the endpoint.
        if not run.confirm(f"Replace inference endpoint {name!r} with the new settings?"):
            raise Refused(f"inference endpoint {name!r} differs; re-run with --yes")
        call(run.t, "DELETE", _endpoint_path(run.options))
    response = run.t.request("PUT", _endpoint_path(run.options), body=desired)
    if not response.ok:
        raise ApiError(
            Request("PUT", _endpoint_path(run.options), {}, desired),
            response,
            "Elasticsearch calls the sidecar while creating the endpoint: check that "
            "--sidecar-url is reachable from the Elasticsearch nodes and the token matches",
        )
    run.report.add(
        "inference endpoint",
        name,
        "created" if current is None else "updated",
        desired["service_settings"]["url"],
    )
    _usage(run)


def _usage(run: EsRun) -> None:
    run.report.usage["search with reranking (text_similarity_reranker retriever)"] = (
        retriever_example(run.options)
    )
    if len(run.options.fields) > 1:
        run.report.note(
            "the retriever reranks on one field; combine several with copy_to into one field"
        )
    run.report.note(
        "Elasticsearch has no default search pipeline: clients opt in by sending the retriever"
    )


TEST_QUERY = "how tall is the eiffel tower"
TEST_DOCS = ["The Eiffel Tower is 330 metres tall.", "Bananas are rich in potassium."]


def status(run: EsRun) -> None:
    detect(run)
    name = run.options.names.inference_id
    current = _get_endpoint(run)
    if current is None:
        run.report.add("inference endpoint", name, "absent", "setup has not run")
        run.report.ok = False
        return
    run.report.add(
        "inference endpoint", name, "ok", str(current.get("service_settings", {}).get("url"))
    )
    started = time.monotonic()
    response = run.t.request(
        "POST", _endpoint_path(run.options), body={"query": TEST_QUERY, "input": TEST_DOCS}
    )
    elapsed = f"{(time.monotonic() - started) * 1000:.0f} ms"
    if not response.ok:
        run.report.add(
            "test rerank", name, "failed", f"HTTP {response.status}: {error_reason(response.body)}"
        )
        return
    ranked = response.body.get("rerank", [])
    scores = {int(item["index"]): float(item["relevance_score"]) for item in ranked}
    good = sorted(scores) == list(range(len(TEST_DOCS)))
    run.report.add(
        "test rerank",
        name,
        "ok" if good else "failed",
        f"scores {[round(scores[i], 4) for i in sorted(scores)]} in {elapsed}",
    )


def teardown(run: EsRun) -> None:
    detect(run)
    name = run.options.names.inference_id
    current = _get_endpoint(run)
    if current is None:
        run.report.note("nothing to remove: no inference endpoint named " + repr(name))
        return
    if not _is_managed(current):
        run.report.add("inference endpoint", name, "skipped", "not made by this tool")
        return
    if not run.options.dry_run and not run.confirm(f"Delete inference endpoint {name!r}?"):
        raise Refused("teardown needs confirmation; re-run with --yes")
    call(run.t, "DELETE", _endpoint_path(run.options))
    run.report.add("inference endpoint", name, "deleted")
