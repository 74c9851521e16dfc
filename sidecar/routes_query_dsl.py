"""`POST /v1/rerank/query-dsl`: rerank for OpenSearch's `ml_inference` search response processor.

The connector that `es_integration` registers sends (ML Commons fills the template):

    {"query": <the search's `query` object, as OpenSearch renders it>,
     "sort": <the search's `sort`, or null>,  # from 2.19.1 set-ups; optional
     "documents": [<per hit: a string, a list, or an object of its fields>, ...],
     "fields": ["title", "body"],            # which keys of object documents, in order
     "fields_by_language": {"zh": ["title_zh"], "default": ["title_en"]},  # optional
     "instruction": "..."}                   # optional

and reads `scores` back: one number per document, in document order (`output_map`
`{"rerank_sidecar_score": "scores"}`; one_to_one sends one document and reads `$.scores[0]`).
A query without text (match_all, term, knn, ...) is answered 422 `no_query_text`: the
processor's `ignore_failure` then leaves the hits untouched, and 4xx is never retried.
With `fields_by_language`, the query's language (sidecar.languages) picks the fields; the answer
says which (`language`, `fields`) and `rerank_query_languages_total` counts them.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sidecar.app import METRICS, RERANK_SERVICE, json_response, read_body
from sidecar.errors import ValidationFailed
from sidecar.languages import DEFAULT as DEFAULT_LANGUAGE
from sidecar.languages import LanguageDetection
from sidecar.query_dsl import client_sort_keys, document_text, query_text
from sidecar.routes import degraded_headers
from sidecar.schemas import QueryDslRerankRequest, format_score, parse_body

QUERY_DSL_PATH = "/v1/rerank/query-dsl"
LANGUAGES = web.AppKey("languages", LanguageDetection)


class NoQueryText(ValidationFailed):
    error_type = "no_query_text"


class ClientSort(ValidationFailed):
    error_type = "client_sort"


async def rerank_query_dsl(request: web.Request) -> web.Response:
    body = parse_body(await read_body(request), QueryDslRerankRequest)
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
    documents = [document_text(doc, fields) for doc in body.documents]
    result = await request.app[RERANK_SERVICE].score_detailed(
        text, documents, instruction=body.instruction, max_tokens_per_doc=body.max_tokens_per_doc
    )
    answer: dict[str, Any] = {
        "scores": [orjson.Fragment(format_score(score)) for score in result.scores],
        "query_text": text,
    }
    if language is not None:
        answer["language"] = language
        answer["fields"] = fields
    if result.degraded:
        answer["degraded"] = True
    return json_response(answer, headers=degraded_headers(result))


def add_routes(app: web.Application) -> None:
    app[LANGUAGES] = LanguageDetection()
    app.router.add_post(QUERY_DSL_PATH, rerank_query_dsl)
