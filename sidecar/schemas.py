"""The wire contract: Cohere/Jina-shaped rerank requests and responses, and the query-DSL route's.

Scores are written for ML Commons' JsonPath parser (docs/contracts.md §2): with a `.` or an
exponent and at most 18 characters, so the Cohere post-process function can cast them to Double.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sidecar.errors import InvalidJSON, ValidationFailed
from sidecar.languages import DEFAULT as DEFAULT_LANGUAGE
from sidecar.languages import known_code
from sidecar.scoring_types import ScoreResult

ModelT = TypeVar("ModelT", bound=BaseModel)


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str


class RerankRequest(BaseModel):
    # Cohere and Jina clients send fields we do not use (rank_fields, ...).
    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1)
    documents: list[str | TextDocument] = Field(min_length=1)
    model: str | None = None
    top_n: int | None = Field(None, ge=0, description="0 or absent = every document")
    return_documents: bool = False
    max_tokens_per_doc: int | None = Field(None, ge=1)
    # Cohere's name: split a long document into up to this many windows, keep the best score.
    max_chunks_per_doc: int | None = Field(None, ge=1)
    instruction: str | None = Field(None, min_length=1)

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query must contain text")
        return value

    def document_texts(self) -> list[str]:
        return [doc if isinstance(doc, str) else doc.text for doc in self.documents]


# index.max_result_window's default: a wider window would fail every search it rewrites.
MAX_RERANK_WINDOW = 10_000


class SearchPage(BaseModel):
    """The page a search asked for, as the client sent it (OpenSearch gives response processors
    the search from before its request processors), and the set-up's rerank window."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    page_from: Any = Field(None, alias="from")
    size: Any = None
    search_after: Any = None
    track_total_hits: Any = None
    source: Any = Field(None, alias="_source")
    window: int = Field(ge=1, le=MAX_RERANK_WINDOW)
    # The connector's read timeout: a windowed search is answered in its own order before it.
    budget_s: float | None = Field(None, gt=0)


class WindowPlanRequest(BaseModel):
    """`POST /v1/rerank/window`: the search body as the pipeline's request processor renders it."""

    model_config = ConfigDict(extra="ignore")

    search: dict[str, Any]
    window: int = Field(ge=1, le=MAX_RERANK_WINDOW)


class QueryDslRerankRequest(BaseModel):
    """`POST /v1/rerank/query-dsl`: what the connector `es_integration` registers sends."""

    model_config = ConfigDict(extra="ignore")

    query: Any = None
    sort: Any = None
    documents: list[Any] = Field(min_length=1)
    fields: list[str] | None = None
    # ISO 639-1 code (or "default") -> the fields written in that language: the query's
    # language picks them; a language not listed, or an unclear query, takes "default".
    fields_by_language: dict[str, list[str]] | None = None
    instruction: str | None = Field(None, min_length=1)
    max_tokens_per_doc: int | None = Field(None, ge=1)
    # With a rerank window: the documents are the window's hits (when the search was windowed,
    # sidecar.rerank_window), and the scores put the page asked for first.
    page: SearchPage | None = None

    @field_validator("fields_by_language")
    @classmethod
    def _known_languages(cls, mapping: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for code, fields in (mapping or {}).items():
            if code != DEFAULT_LANGUAGE and not known_code(code):
                raise ValueError(f"{code!r} is not an ISO 639-1 language code (or 'default')")
            if not fields:
                raise ValueError(f"{code!r} maps to no field")
        # Detection answers in lowercase: "ZH" must match it.
        return {code.lower(): fields for code, fields in mapping.items()} if mapping else mapping


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def parse_body(raw: bytes, model: type[ModelT]) -> ModelT:
    """Parse a JSON body into `model`; errors name the offending field."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidJSON("request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_field_path(err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()[:10]
        ]
        raise ValidationFailed("; ".join(problems)) from None


def format_score(score: float) -> bytes:
    """A JSON number ML Commons reads as a Double: 9 significant digits, always `.` or exponent."""
    if not math.isfinite(score):
        raise ValueError(f"score {score!r} is not a finite number")
    text = format(score, ".9g")
    if "." not in text and "e" not in text:
        text += ".0"
    return text.encode()


def rerank_response(
    *,
    documents: Sequence[str],
    result: ScoreResult,
    top_n: int | None,
    return_documents: bool,
) -> dict[str, Any]:
    """Cohere/Jina response body, sorted by score; ties keep input order."""
    scores = result.scores
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if top_n:
        order = order[:top_n]
    results: list[dict[str, Any]] = []
    for index in order:
        item: dict[str, Any] = {
            "index": index,
            "relevance_score": orjson.Fragment(format_score(scores[index])),
        }
        if return_documents:
            item["document"] = {"text": documents[index]}
        results.append(item)
    meta: dict[str, Any] = {
        "model_kind": result.model_kind,
        "billed_units": {"input_tokens": result.input_tokens, "search_units": 1},
        "truncated_documents": result.truncated_documents,
    }
    if result.degraded:
        meta["degraded"] = True
    return {
        "id": str(uuid.uuid4()),
        "model": result.model_name,
        "results": results,
        "meta": meta,
        "usage": {"total_tokens": result.input_tokens},
    }
