"""sidecar/query_dsl.py: the query text of the DSL shapes clients send, in the short form clients
write and in the full form OpenSearch renders (`request.source().toString()`), which is what
ml_inference passes on from `$._request.query`."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.query_dsl import query_text, strip_syntax
from tests.es_integration.mlcommons_sim import render_query

SHAPES: list[tuple[str, dict[str, Any], str]] = [
    ("match short", {"match": {"title": "red running shoes"}}, "red running shoes"),
    ("match long", {"match": {"title": {"query": "red shoes", "operator": "and"}}}, "red shoes"),
    ("match_phrase", {"match_phrase": {"body": "trail running"}}, "trail running"),
    ("match_phrase_prefix", {"match_phrase_prefix": {"body": {"query": "trail ru"}}}, "trail ru"),
    (
        "multi_match",
        {"multi_match": {"query": "waterproof jacket", "fields": ["title^2", "body"]}},
        "waterproof jacket",
    ),
    (
        "query_string",
        {"query_string": {"query": 'title:(quick OR "brown fox")^2 -lazy~1'}},
        "quick brown fox",
    ),
    (
        "simple_query_string",
        {"simple_query_string": {"query": '"fried eggs" +(eggplant | potato) -frittata'}},
        "fried eggs eggplant potato",
    ),
    ("bool must", {"bool": {"must": [{"match": {"title": "tent"}}]}}, "tent"),
    ("bool must object", {"bool": {"must": {"match": {"title": "tent"}}}}, "tent"),
    (
        "bool should",
        {
            "bool": {
                "should": [
                    {"match": {"title": "tent"}},
                    {"multi_match": {"query": "two person", "fields": ["b"]}},
                ]
            }
        },
        "tent two person",
    ),
    (
        "bool filter only",
        {"bool": {"filter": [{"match": {"title": "tent"}}, {"term": {"x": 1}}]}},
        "tent",
    ),
    (
        "bool ignores must_not",
        {
            "bool": {
                "must": [{"match": {"title": "tent"}}],
                "must_not": [{"match": {"title": "used"}}],
            }
        },
        "tent",
    ),
    (
        "bool filter not mixed in",
        {"bool": {"must": [{"match": {"t": "tent"}}], "filter": [{"match": {"brand": "acme"}}]}},
        "tent",
    ),
    (
        "nested bool",
        {
            "bool": {
                "must": [{"bool": {"should": [{"query_string": {"query": "sleeping AND bag"}}]}}]
            }
        },
        "sleeping bag",
    ),
    (
        "duplicates once",
        {"bool": {"should": [{"match": {"title": "Tent"}}, {"match": {"body": "tent"}}]}},
        "Tent",
    ),
    (
        "dis_max",
        {"dis_max": {"queries": [{"match": {"a": "stove"}}, {"match": {"b": "gas"}}]}},
        "stove gas",
    ),
    (
        "function_score",
        {"function_score": {"query": {"match": {"a": "lamp"}}, "functions": []}},
        "lamp",
    ),
    ("constant_score", {"constant_score": {"filter": {"match": {"a": "lamp"}}}}, "lamp"),
    (
        "boosting",
        {
            "boosting": {
                "positive": {"match": {"a": "lamp"}},
                "negative": {"match": {"a": "broken"}},
                "negative_boost": 0.2,
            }
        },
        "lamp",
    ),
    (
        "nested",
        {"nested": {"path": "reviews", "query": {"match": {"reviews.text": "sturdy"}}}},
        "sturdy",
    ),
    (
        "neural",
        {"neural": {"embedding": {"query_text": "warm socks", "model_id": "m", "k": 5}}},
        "warm socks",
    ),
    (
        "hybrid",
        {
            "hybrid": {
                "queries": [
                    {"match": {"t": "warm socks"}},
                    {"neural": {"e": {"query_text": "warm socks"}}},
                ]
            }
        },
        "warm socks",
    ),
    (
        "combined_fields",
        {"combined_fields": {"query": "rain coat", "fields": ["a", "b"]}},
        "rain coat",
    ),
    ("number", {"match": {"year": 1999}}, "1999"),
    ("search body", {"query": {"match": {"title": "kayak"}}, "size": 5}, "kayak"),
]

NO_TEXT: list[tuple[str, Any]] = [
    ("match_all", {"match_all": {}}),
    ("term", {"term": {"brand": "acme"}}),
    ("range", {"range": {"price": {"lte": 10}}}),
    ("knn", {"knn": {"vector": {"vector": [0.1, 0.2], "k": 3}}}),
    ("bool of filters", {"bool": {"filter": [{"term": {"a": 1}}, {"range": {"b": {"gt": 1}}}]}}),
    ("only must_not", {"bool": {"must_not": [{"match": {"title": "used"}}]}}),
    ("null", None),
    ("empty", {}),
    ("list", [1, 2]),
]


@pytest.mark.parametrize(("name", "query", "expected"), SHAPES, ids=[s[0] for s in SHAPES])
def test_query_text_of_client_and_rendered_forms(name: str, query: Any, expected: str) -> None:
    assert query_text(query) == expected
    # A search body's `query` is what OpenSearch renders; other shapes are the query itself.
    rendered = (
        {"query": render_query(query["query"])} if name == "search body" else render_query(query)
    )
    assert query_text(rendered) == expected


@pytest.mark.parametrize(("name", "query"), NO_TEXT, ids=[s[0] for s in NO_TEXT])
def test_queries_without_text(name: str, query: Any) -> None:
    assert query_text(query) == ""


def test_plain_string_and_whitespace() -> None:
    assert query_text("  how  tall \n is it ") == "how tall is it"


def test_deep_nesting_is_bounded() -> None:
    query: dict[str, Any] = {"match": {"t": "deep"}}
    for _ in range(500):
        query = {"bool": {"must": [query]}}
    assert query_text(query) == ""  # beyond 64 levels: ignored, not a RecursionError


def test_long_text_is_capped() -> None:
    assert len(query_text({"match": {"t": "word " * 5000}})) <= 4096


def test_strip_syntax_keeps_words_hyphens_and_times() -> None:
    assert strip_syntax("wi-fi router 10:30 NOT refurbished") == "wi-fi router 10:30"
    assert strip_syntax('body:"exact phrase" AND title:tent*') == "exact phrase tent"
