"""sidecar/routes_query_dsl.py over HTTP, with a recording stand-in for RerankService.

The bodies are the ones ML Commons fills from the connector setup registers (checked end to end
against the real service in test_contract_e2e.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.app import METRICS, RERANK_SERVICE, SETTINGS, errors_as_json
from sidecar.config import Settings
from sidecar.metrics import Metrics
from sidecar.query_dsl import document_text
from sidecar.routes_query_dsl import QUERY_DSL_PATH, add_routes
from sidecar.scoring_types import ScoreResult


class RecordingService:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], str | None]] = []

    async def score_detailed(
        self,
        query: str,
        documents: Sequence[str],
        *,
        instruction: str | None = None,
        max_tokens_per_doc: int | None = None,
    ) -> ScoreResult:
        self.calls.append((query, list(documents), instruction))
        return ScoreResult(
            scores=[1.0 / (i + 1) for i in range(len(documents))],
            input_tokens=0,
            truncated_documents=0,
            model_name="recording",
            model_kind="cross-encoder",
        )


@pytest_asyncio.fixture
async def dsl_app() -> AsyncIterator[tuple[str, RecordingService]]:
    app = web.Application(middlewares=[errors_as_json])
    service = RecordingService()
    app[RERANK_SERVICE] = service  # type: ignore[assignment]
    app[SETTINGS] = Settings()
    app[METRICS] = Metrics()
    add_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url(QUERY_DSL_PATH)), service
    await server.close()


async def post(url: str, body: Any) -> tuple[int, dict[str, Any], str]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        text = await response.text()
        return response.status, json.loads(text), text


async def test_batch_body_as_ml_inference_sends_it(dsl_app: tuple[str, RecordingService]) -> None:
    url, service = dsl_app
    body = {
        "query": {
            "bool": {
                "must": [{"match": {"title": {"query": "red shoes", "boost": 1.0}}}],
                "adjust_pure_negative": True,
            }
        },
        "documents": [
            {"title": "Red shoes", "body": ["size 42", "leather"], "rerank_sidecar_score": None},
            {"title": None, "body": None, "rerank_sidecar_score": None},
        ],
        "fields": ["title", "body"],
        "instruction": "Find shoes",
    }
    status, data, raw = await post(url, body)
    assert status == 200, data
    assert service.calls == [("red shoes", ["Red shoes\nsize 42 leather", ""], "Find shoes")]
    assert data["query_text"] == "red shoes"
    assert data["scores"] == [1.0, 0.5]
    assert '"scores":[1.0,0.5]' in raw  # written with a dot, as ML Commons reads Doubles


async def test_query_without_text_is_422_no_query_text(
    dsl_app: tuple[str, RecordingService],
) -> None:
    url, service = dsl_app
    status, data, _ = await post(url, {"query": {"match_all": {}}, "documents": ["a"]})
    assert status == 422 and data["error"]["type"] == "no_query_text"
    assert service.calls == []


async def test_search_sorted_by_a_field_is_422_client_sort(
    dsl_app: tuple[str, RecordingService],
) -> None:
    url, service = dsl_app
    query = {"match": {"title": {"query": "boots"}}}
    # As OpenSearch renders a client's `"sort": [{"price": "desc"}, "_score"]`.
    sort = [{"price": {"order": "desc"}}, {"_score": {"order": "desc"}}]
    status, data, _ = await post(url, {"query": query, "sort": sort, "documents": ["a"]})
    assert status == 422 and data["error"]["type"] == "client_sort"
    assert "price" in data["error"]["message"]
    assert service.calls == []
    # Relevance order (descending _score) and no sort at all are reranked.
    for relevance in ([{"_score": {"order": "desc"}}], ["_score"], None):
        status, data, _ = await post(url, {"query": query, "sort": relevance, "documents": ["a"]})
        assert status == 200, (relevance, data)
    ascending = {"_score": "asc"}
    status, data, _ = await post(url, {"query": query, "sort": ascending, "documents": ["a"]})
    assert status == 422 and data["error"]["type"] == "client_sort"


async def test_invalid_bodies_are_4xx(dsl_app: tuple[str, RecordingService]) -> None:
    url, _ = dsl_app
    status, data, _ = await post(url, {"query": {"match": {"t": "x"}}, "documents": []})
    assert status == 422 and data["error"]["type"] == "validation_error"
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{nope") as response:
        assert response.status == 400


def test_document_text_rules() -> None:
    assert document_text({"meta": {"title": "T"}, "body": "B"}, ["meta.title", "body"]) == "T\nB"
    assert document_text({"meta.title": "flat"}, ["meta.title"]) == "flat"
    assert document_text({"reviews": [{"text": "good"}, {"text": "bad"}]}, ["reviews.text"]) == (
        "good bad"
    )
    assert document_text({"a": "x", "b": 3}) == "x\n3"
    assert document_text(["a", ["b", None]]) == "a b"
    assert document_text(None) == "" and document_text(True) == ""


PRODUCT = {
    "title": "竹子做的熊猫玩具",
    "title_en": "Panda toy made of bamboo",
    "title_es": "Juguete de panda de bambú",
}
BY_LANGUAGE = {"zh": ["title"], "es": ["title_es"], "default": ["title_en"]}


@pytest.mark.parametrize(
    ("query", "language", "text"),
    [
        ("熊猫玩具", "zh", PRODUCT["title"]),
        ("juguete de panda para niños", "es", PRODUCT["title_es"]),
        ("wooden panda toy for kids", "default", PRODUCT["title_en"]),  # en is not mapped
    ],
)
async def test_the_query_language_picks_the_fields(
    dsl_app: tuple[str, RecordingService], query: str, language: str, text: str
) -> None:
    url, service = dsl_app
    body = {
        "query": {"match": {"title": query}},
        "documents": [PRODUCT],
        "fields": ["title_en"],
        "fields_by_language": BY_LANGUAGE,
    }
    status, answer, _ = await post(url, body)
    assert status == 200, answer
    assert answer["language"] == language
    assert answer["fields"] == BY_LANGUAGE[language]
    assert service.calls[-1][1] == [text]


async def test_language_codes_match_in_any_case(dsl_app: tuple[str, RecordingService]) -> None:
    url, service = dsl_app
    mapping = {"ZH": ["title"], "default": ["title_en"]}
    body = {"query": "熊猫玩具", "documents": [PRODUCT], "fields_by_language": mapping}
    status, answer, _ = await post(url, body)
    assert status == 200 and answer["language"] == "zh"
    assert service.calls[-1][1] == [PRODUCT["title"]]


@pytest.mark.parametrize(
    "mapping", [{"xx": ["title"]}, {"zh": []}, {"zh": "title"}], ids=["code", "empty", "type"]
)
async def test_a_bad_language_map_is_a_422_naming_it(
    dsl_app: tuple[str, RecordingService], mapping: Any
) -> None:
    url, service = dsl_app
    body = {"query": "panda", "documents": [PRODUCT], "fields_by_language": mapping}
    status, answer, _ = await post(url, body)
    assert status == 422
    assert "fields_by_language" in answer["error"]["message"]
    assert service.calls == []
