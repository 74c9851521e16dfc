"""`GET /openapi.json`: the API description, from the pydantic request models and response models.

The request models are the ones the handlers parse with; the handlers build their answers as
dicts (scores are written as raw JSON numbers, `schemas.format_score`), so the answers' shapes are
declared here as models and a test validates real answers against this schema.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from sidecar.config import Settings
from sidecar.routes_query_dsl import QUERY_DSL_PATH, WINDOW_PATH
from sidecar.schemas import (
    QueryDslRerankRequest,
    RerankRequest,
    TextDocument,
    WindowPlanRequest,
)

RERANK_PATHS = ("/v1/rerank", "/v2/rerank", "/rerank")


class RerankResult(BaseModel):
    index: int = Field(description="position of the document in the request")
    relevance_score: float = Field(description="higher is more relevant; 9 significant digits")
    document: TextDocument | None = Field(None, description="with return_documents only")


class BilledUnits(BaseModel):
    input_tokens: int
    search_units: int


class RerankMeta(BaseModel):
    model_kind: str = Field(description="cross-encoder (Qwen3 via vLLM) or bi-encoder (embedded)")
    billed_units: BilledUnits
    truncated_documents: int = Field(description="documents cut to fit the token limit")


class Usage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="sorted by relevance_score, best first")
    meta: RerankMeta
    usage: Usage


class QueryDslRerankResponse(BaseModel):
    scores: list[float] = Field(description="one score per document, in document order")
    query_text: str | None = Field(
        None, description="the text taken out of the query DSL (absent: the order was kept)"
    )


class WindowPlanResponse(BaseModel):
    from_: int = Field(alias="from", description="the search's new from (0 when windowed)")
    size: int = Field(description="the search's new size (the window, or more for a late page)")
    skipped: str | None = Field(description="why the search was left as it is (null: windowed)")


class ErrorDetail(BaseModel):
    type: str = Field(description="validation_error, unauthorized, overloaded, ...")
    message: str = Field(description="names the offending field when a field is wrong")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    model: str | None = None
    reason: str | None = Field(None, description="why the sidecar is not ready")


_REQUESTS: tuple[type[BaseModel], ...] = (RerankRequest, QueryDslRerankRequest, WindowPlanRequest)
_RESPONSES: tuple[type[BaseModel], ...] = (
    RerankResponse,
    QueryDslRerankResponse,
    WindowPlanResponse,
    ErrorResponse,
    Health,
)

_ERRORS = {
    "400": "the body is not a JSON object (invalid_json), or not readable HTTP (bad_request)",
    "408": "the request's body did not arrive in time (request_timeout)",
    "401": "RERANK_API_TOKEN is set and the bearer token is missing or wrong",
    "413": "body over max_body_bytes, or more than max_documents documents",
    "422": "a field is wrong; the message names it",
    "429": "the queue is full; Retry-After says when to come back",
    "503": "the backend is unreachable or failing, or the request's deadline passed",
}


def _json(schema_ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema_ref}}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    refs, definitions = models_json_schema(
        [(model, "validation") for model in _REQUESTS]
        + [(model, "serialization") for model in _RESPONSES],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = definitions["$defs"]
    instruction = schemas["RerankRequest"]["properties"]["instruction"]
    # Absent means the sidecar's configured instruction; the try-it page shows it.
    instruction["default"] = settings.instruction
    instruction["description"] = "task instruction of the Qwen3 prompt (the bi-encoder ignores it)"

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    errors = {
        status: _json(ref(ErrorResponse, "serialization"), text) for status, text in _ERRORS.items()
    }
    security: list[dict[str, list[str]]] = [{"bearer": []}] if settings.api_token else []

    def post(summary: str, request: type[BaseModel], answer: type[BaseModel]) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref(request, "validation")}},
                },
                "responses": {
                    "200": _json(ref(answer, "serialization"), "scored"),
                    **errors,
                },
            }
        }

    health = ref(Health, "serialization")
    paths: dict[str, Any] = {
        path: post("Rerank documents against a query (Cohere/Jina shape)", RerankRequest,
                   RerankResponse)
        for path in RERANK_PATHS
    }  # fmt: skip
    paths[QUERY_DSL_PATH] = post(
        "Score hits for OpenSearch's ml_inference processor (query DSL in, one score per hit)",
        QueryDslRerankRequest,
        QueryDslRerankResponse,
    )
    paths[WINDOW_PATH] = post(
        "Rewrite a search for the rerank window (OpenSearch's ml_inference request processor)",
        WindowPlanRequest,
        WindowPlanResponse,
    )
    paths["/healthz"] = {"get": {"summary": "The process is alive", "security": [],
                                 "responses": {"200": _json(health, "alive")}}}  # fmt: skip
    paths["/readyz"] = {
        "get": {
            "summary": "The backend serves the model and scores a probe",
            "security": [],
            "responses": {"200": _json(health, "ready"), "503": _json(health, "not ready")},
        }
    }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics",
            "security": [],
            "responses": {"200": {"description": "text exposition format",
                                  "content": {"text/plain": {}}}},
        }
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rerank-sidecar",
            "version": "1",
            "description": "Reranking for OpenSearch and Elasticsearch: one score per "
            "(query, document) pair from a Qwen3 cross-encoder on vLLM, or an embedded CPU model.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
