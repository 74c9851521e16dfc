"""The rerank contract: request parsing, score literals ML Commons can read, response order."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from sidecar.errors import InvalidJSON, ValidationFailed
from sidecar.schemas import RerankRequest, format_score, parse_body, rerank_response
from sidecar.scoring_types import ScoreResult
from tests.support.ml_commons import MLCommonsError, cohere_rerank_post_process

EDGE_SCORES = [0.0, 1.0, 0.5, 1 - 1e-12, 1e-12, 3.3652782440185547e-4, 5e-324, 0.1 + 0.2]


@pytest.mark.parametrize(
    "score", EDGE_SCORES + [random.Random(7).random() ** 9 for _ in range(200)]
)
def test_every_score_literal_is_a_short_double_for_json_smart(score: float) -> None:
    literal = format_score(score).decode()
    assert len(literal) <= 18
    assert "." in literal or "e" in literal
    assert float(literal) == pytest.approx(score, rel=1e-8, abs=1e-300)


def test_non_finite_score_is_refused() -> None:
    with pytest.raises(ValueError):
        format_score(float("nan"))


def test_response_is_sorted_cut_by_top_n_and_readable_by_ml_commons_post_process() -> None:
    scores = [0.1, 0.00033652782440185547, 0.9, 1.0]
    body = rerank_response(
        documents=["a", "b", "c", "d"],
        result=ScoreResult(scores, 12, 0, "m", "cross-encoder"),
        top_n=None,
        return_documents=True,
    )
    raw = orjson.dumps(body)
    assert [r["index"] for r in json.loads(raw)["results"]] == [3, 2, 0, 1]
    assert json.loads(raw)["results"][0]["document"] == {"text": "d"}
    assert cohere_rerank_post_process(raw) == pytest.approx(scores, rel=1e-8)

    top2 = rerank_response(
        documents=["a", "b", "c", "d"],
        result=ScoreResult(scores, 12, 0, "m", "cross-encoder"),
        top_n=2,
        return_documents=False,
    )
    assert [r["index"] for r in json.loads(orjson.dumps(top2))["results"]] == [3, 2]
    assert "document" not in json.loads(orjson.dumps(top2))["results"][0]


def test_the_post_process_stand_in_rejects_what_ml_commons_rejects() -> None:
    # The checks the contract tests rely on must be able to fail.
    with pytest.raises(MLCommonsError, match="Double"):
        cohere_rerank_post_process(b'{"results": [{"index": 0, "relevance_score": 1}]}')
    with pytest.raises(MLCommonsError, match="Double"):
        cohere_rerank_post_process(
            b'{"results": [{"index": 0, "relevance_score": 0.00033652782440185547}]}'
        )
    with pytest.raises(MLCommonsError, match="Integer"):
        cohere_rerank_post_process(b'{"results": [{"index": 0.0, "relevance_score": 0.5}]}')


def test_documents_may_be_strings_or_text_objects_and_unknown_fields_are_ignored() -> None:
    request = parse_body(
        b'{"query": "q", "documents": ["a", {"text": "b"}], "rank_fields": ["x"], "top_n": 0}',
        RerankRequest,
    )
    assert request.document_texts() == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        (b"{not json", InvalidJSON, "JSON"),
        (b"[1, 2]", InvalidJSON, "object"),
        (b'{"documents": ["a"]}', ValidationFailed, "query"),
        (b'{"query": "q", "documents": []}', ValidationFailed, "documents"),
        (b'{"query": "q", "documents": ["a", 5]}', ValidationFailed, "documents[1]"),
        (b'{"query": "q", "documents": ["a", {"txt": "b"}]}', ValidationFailed, "documents[1]"),
        (b'{"query": "   ", "documents": ["a"]}', ValidationFailed, "query"),
        (b'{"query": "q", "documents": ["a"], "top_n": -1}', ValidationFailed, "top_n"),
        (
            b'{"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}',
            ValidationFailed,
            "max_tokens_per_doc",
        ),
    ],
)
def test_bad_bodies_name_the_field(body: bytes, error: type[Exception], field: str) -> None:
    with pytest.raises(error, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_body(body, RerankRequest)
