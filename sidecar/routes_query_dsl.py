"""The routes of OpenSearch's `ml_inference` search processors: `POST /v1/rerank/query-dsl`
(response processor: rerank the hits) and `POST /v1/rerank/window` (request processor: rewrite a
search for the rerank window, sidecar.rerank_window).

The connector that `es_integration` registers sends (ML Commons fills the template):

    {"query": <the search's `query` object, as OpenSearch renders it>,
     "sort": <the search's `sort`, or null>,  # from 2.19.1 set-ups; optional
     "documents": [<per hit: a string, a list, or an object of its fields>, ...],
     "fields": ["title", "body"],            # which keys of object documents, in order
     "fields_by_language": {"zh": ["title_zh"], "default": ["title_en"]},  # optional
     "instruction": "...",                   # optional
     "page": {"from": 10, "size": 10, "search_after": null, "window": 50}}  # optional

and reads `scores` back: one number per document, in document order (`output_map`
`{"rerank_sidecar_score": "scores"}`; one_to_one sends one document and reads `$.scores[0]`).
A query without text (match_all, term, knn, ...) is answered 422 `no_query_text`: the
processor's `ignore_failure` then leaves the hits untouched, and 4xx is never retried.
With `fields_by_language`, the query's language (sidecar.languages) picks the fields; the answer
says which (`language`, `fields`) and `rerank_query_languages_total` counts them.
With `page` (a rerank window: the client's from/size/search_after, as it sent them), a search
the window rewrote gets its first `window` documents reranked and scores that put the page first;
if they cannot be scored, its own order's page (never an error, which would show the client the
first page instead of the one it asked for). A page past the window is answered 422
`beyond_window` (its hits keep their order); other searches as without `page`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from sidecar import rerank_window
from sidecar.app import METRICS, RERANK_SERVICE, json_response, read_body
from sidecar.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    Overloaded,
    PayloadTooLarge,
    ValidationFailed,
)
from sidecar.languages import DEFAULT as DEFAULT_LANGUAGE
from sidecar.languages import LanguageDetection
from sidecar.query_dsl import client_sort_keys, document_text, query_text
from sidecar.rerank_window import Page
from sidecar.routes import degraded_headers
from sidecar.schemas import (
    QueryDslRerankRequest,
    WindowPlanRequest,
    format_score,
    parse_body,
)

QUERY_DSL_PATH = "/v1/rerank/query-dsl"
WINDOW_PATH = "/v1/rerank/window"
LANGUAGES = web.AppKey("languages", LanguageDetection)


class NoQueryText(ValidationFailed):
    error_type = "no_query_text"


class ClientSort(ValidationFailed):
    error_type = "client_sort"


class BeyondWindow(ValidationFailed):
    error_type = "beyond_window"


async def plan_window(request: web.Request) -> web.Response:
    body = parse_body(await read_body(request), WindowPlanRequest)
    plan = rerank_window.plan(body.search, body.window)
    request.app[METRICS].window_plans.labels(plan.skipped or "windowed").inc()
    return json_response(plan.answer())


def _scores_answer(scores: list[float], **extra: Any) -> dict[str, Any]:
    return {"scores": [orjson.Fragment(format_score(score)) for score in scores], **extra}


def _windowed_page(body: QueryDslRerankRequest) -> Page | None:
    """The page of a search the window request processor rewrote (the same decision)."""
    if body.page is None:
        return None
    search: dict[str, Any] = {
        "from": body.page.page_from,
        "size": body.page.size,
        "search_after": body.page.search_after,
        "track_total_hits": body.page.track_total_hits,
        "_source": body.page.source,
        "sort": body.sort,
        "query": body.query,
    }
    plan = rerank_window.plan(search, body.page.window)
    if plan.skipped == "beyond_window":
        raise BeyondWindow(
            f"the page starts at {plan.from_}, past the rerank window of {body.page.window}: "
            "its hits keep their order"
        )
    if plan.page is not None and len(body.documents) <= plan.page.size:
        # No more hits than one page: the rewrite failed (these are the page's own hits) or all
        # hits fit the page: reranked as one page, the client sees the same hits either way.
        return None
    return plan.page


async def rerank_query_dsl(request: web.Request) -> web.Response:
    body = parse_body(await read_body(request), QueryDslRerankRequest)
    page = _windowed_page(body)
    if sort_keys := client_sort_keys(body.sort):
        raise ClientSort(f"the search sorts by {sort_keys}; its order is kept, not reranked")
    text = query_text(body.query)
    if not text:
        raise NoQueryText(
            "the query has no text to rerank against (match_all, term, range, knn, ...)"
        )
    fields, language = body.fields, None
    if mapping := body.fields_by_language:
        codes = [code for code in mapping if code != DEFAULT_LANGUAGE]
        language = await request.app[LANGUAGES].detect(text, codes)
        fields = mapping.get(language) or body.fields
        request.app[METRICS].query_languages.labels(language).inc()
    # A windowed search has no sort and has text: plan() skips the others.
    ranked = body.documents if page is None else body.documents[: page.window]
    documents = [document_text(doc, fields) for doc in ranked]
    # A windowed search must be answered before the connector gives up: its failure would show
    # the first page.
    budget = body.page.budget_s if page is not None and body.page is not None else None
    try:
        async with asyncio.timeout(None if budget is None else max(0.5, budget - 1.0)):
            result = await request.app[RERANK_SERVICE].score_detailed(
                text,
                documents,
                instruction=body.instruction,
                max_tokens_per_doc=body.max_tokens_per_doc,
            )
    except (
        Overloaded,
        BackendUnavailable,
        DeadlineExceeded,
        PayloadTooLarge,
        TimeoutError,
    ) as error:
        if page is None:
            raise
        kind = getattr(error, "error_type", "timeout")
        request.app[METRICS].window_fallbacks.labels(kind).inc()
        keep = rerank_window.keep_order_scores(len(body.documents), page)
        return json_response(_scores_answer(keep, degraded=True))
    scores = (
        result.scores
        if page is None
        else rerank_window.page_scores(result.scores, len(body.documents), page)
    )
    answer = _scores_answer(scores, query_text=text)
    if language is not None:
        answer["language"] = language
        answer["fields"] = fields
    if result.degraded:
        answer["degraded"] = True
    return json_response(answer, headers=degraded_headers(result))


def add_routes(app: web.Application) -> None:
    app[LANGUAGES] = LanguageDetection()
    app.router.add_post(QUERY_DSL_PATH, rerank_query_dsl)
    app.router.add_post(WINDOW_PATH, plan_window)
