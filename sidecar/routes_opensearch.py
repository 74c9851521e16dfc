"""`POST /v1/rerank/query-dsl`: rerank for OpenSearch's `ml_inference` search response processor.

The connector that `es_integration` registers sends (ML Commons fills the template):

    {"query": <the search's `query` object, as OpenSearch renders it>,
     "sort": <the search's `sort`, or null>,  # from 2.19.1 set-ups; optional
     "documents": [<per hit: a string, a list, or an object of its fields>, ...],
     "fields": ["title", "body"],            # which keys of object documents, in order
     "instruction": "..."}                   # optional

and reads `scores` back: one number per document, in document order (`output_map`
`{"rerank_sidecar_score": "scores"}`; one_to_one sends one document and reads `$.scores[0]`).
A query without text (match_all, term, knn, ...) is answered 422 `no_query_text`: the
processor's `ignore_failure` then leaves the hits untouched, and 4xx is never retried.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from sidecar.app import RERANK_SERVICE, json_response
from sidecar.errors import ValidationFailed
from sidecar.query_dsl import client_sort_keys, query_text
from sidecar.schemas import format_score, parse_body

QUERY_DSL_PATH = "/v1/rerank/query-dsl"


class NoQueryText(ValidationFailed):
    error_type = "no_query_text"


class ClientSort(ValidationFailed):
    error_type = "client_sort"


class QueryDslRerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: Any = None
    sort: Any = None
    documents: list[Any] = Field(min_length=1)
    fields: list[str] | None = None
    instruction: str | None = Field(None, min_length=1)
    max_tokens_per_doc: int | None = Field(None, ge=1)


def _path_value(source: dict[str, Any], path: str) -> Any:
    """A field by dot path; a literal dotted key wins; lists of objects are walked."""
    if path in source:
        return source[path]
    head, _, rest = path.partition(".")
    if not rest or head not in source:
        return None
    value = source[head]
    if isinstance(value, dict):
        return _path_value(value, rest)
    if isinstance(value, list):
        return [_path_value(item, rest) for item in value if isinstance(item, dict)]
    return None


def document_text(document: Any, fields: list[str] | None = None) -> str:
    """One hit's text: strings as they are, lists joined by spaces (as neural-search joins
    multi-valued fields), objects by field (the listed ones, in order) joined by newlines."""
    if document is None or isinstance(document, bool):
        return ""
    if isinstance(document, str):
        return document
    if isinstance(document, int | float):
        return str(document)
    if isinstance(document, list):
        return " ".join(text for item in document if (text := document_text(item)))
    if isinstance(document, dict):
        values = [_path_value(document, name) for name in fields] if fields else document.values()
        return "\n".join(text for value in values if (text := document_text(value)))
    return ""


async def rerank_query_dsl(request: web.Request) -> web.Response:
    body = parse_body(await request.read(), QueryDslRerankRequest)
    if sort_keys := client_sort_keys(body.sort):
        raise ClientSort(f"the search sorts by {sort_keys}; its order is kept, not reranked")
    text = query_text(body.query)
    if not text:
        raise NoQueryText(
            "the query has no text to rerank against (match_all, term, range, knn, ...)"
        )
    documents = [document_text(doc, body.fields) for doc in body.documents]
    scores = await request.app[RERANK_SERVICE].score(
        text, documents, instruction=body.instruction, max_tokens_per_doc=body.max_tokens_per_doc
    )
    return json_response(
        {
            "scores": [orjson.Fragment(format_score(score)) for score in scores],
            "query_text": text,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(QUERY_DSL_PATH, rerank_query_dsl)
