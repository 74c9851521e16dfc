"""Unchanged client queries against the real node: reranked in the sidecar's order, or left alone.

Each search runs twice, through the index's default pipeline and with `search_pipeline=_none`;
the expected order comes from calling the sidecar directly with the same query and documents.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.conftest import FIELDS, SCORE_FIELD, Attached, Cluster, ids, post_json

pytestmark = [pytest.mark.cluster, pytest.mark.vllm]

TEXT_QUERIES: dict[str, dict[str, Any]] = {
    "match": {"match": {"body": "boots for wet trails"}},
    "multi_match": {"multi_match": {"query": "waterproof hiking boots", "fields": FIELDS}},
    "bool with filters": {
        "bool": {
            "must": [{"match": {"title": "boots"}}],
            "filter": [{"range": {"price": {"gte": 0}}}, {"exists": {"field": "brand"}}],
        }
    },
    "function_score": {
        "function_score": {
            "query": {"match": {"body": "rain trails boots"}},
            "field_value_factor": {"field": "rating", "missing": 1},
        }
    },
    "query_string": {"query_string": {"query": "title:(boots OR shoes) OR body:hiking"}},
    "dis_max": {
        "dis_max": {
            "queries": [{"match": {"title": "hiking boots"}}, {"match": {"body": "hiking"}}]
        }
    },
    "nested": {
        "bool": {
            "must": [{"match": {"body": "boots"}}],
            "should": [
                {"nested": {"path": "variants", "query": {"match": {"variants.color": "red"}}}}
            ],
        }
    },
}


def assert_no_score_field(result: dict[str, Any]) -> None:
    for hit in result["hits"]["hits"]:
        assert SCORE_FIELD not in (hit.get("_source") or {}), hit


def sidecar_order(sidecar: str, query: dict[str, Any], hits: list[dict[str, Any]]) -> list[str]:
    """The order the sidecar's own scores give, called directly (ties keep the input order)."""
    documents = [hit.get("_source", {}) for hit in hits]
    status, answer = post_json(
        f"{sidecar}/v1/rerank/query-dsl", {"query": query, "documents": documents, "fields": FIELDS}
    )
    assert status == 200, answer
    scores = answer["scores"]
    assert len(set(scores)) == len(scores), "the tiny model gave tied scores: order is ambiguous"
    ranked = sorted(range(len(hits)), key=lambda i: -scores[i])
    return [hits[i]["_id"] for i in ranked]


@pytest.mark.parametrize("kind", list(TEXT_QUERIES))
def test_unchanged_query_comes_back_in_the_sidecars_order(
    cluster: Cluster, catalog: Attached, kind: str
) -> None:
    body = {"query": TEXT_QUERIES[kind], "size": 10}
    plain = cluster.plain(catalog.index, body)
    reranked = cluster.search(catalog.index, body)
    assert len(plain["hits"]["hits"]) >= 3, "the query must match enough hits to reorder"
    expected = sidecar_order(catalog.sidecar, TEXT_QUERIES[kind], plain["hits"]["hits"])
    assert ids(reranked) == expected
    assert_no_score_field(reranked)


def test_reranking_changes_the_order_somewhere(cluster: Cluster, catalog: Attached) -> None:
    """Guards the test above: identical orders everywhere would prove nothing."""
    changed = [
        kind
        for kind, query in TEXT_QUERIES.items()
        if ids(cluster.plain(catalog.index, {"query": query}))
        != ids(cluster.search(catalog.index, {"query": query}))
    ]
    assert changed


def test_paging_source_filtering_totals_and_aggregations(
    cluster: Cluster, catalog: Attached
) -> None:
    body = {
        "query": TEXT_QUERIES["multi_match"],
        "from": 3,
        "size": 4,
        "_source": ["title", "body", "price"],
        "track_total_hits": True,
        "aggs": {"brands": {"terms": {"field": "brand"}}, "avg_price": {"avg": {"field": "price"}}},
    }
    plain = cluster.plain(catalog.index, body)
    reranked = cluster.search(catalog.index, body)
    # Only the returned page is reranked: the same hits, perhaps in another order.
    assert sorted(ids(reranked)) == sorted(ids(plain)) and len(ids(plain)) == 4
    assert ids(reranked) == sidecar_order(
        catalog.sidecar, TEXT_QUERIES["multi_match"], plain["hits"]["hits"]
    )
    assert reranked["hits"]["total"] == plain["hits"]["total"]
    assert reranked["aggregations"] == plain["aggregations"]
    # Nothing else is added, but for the empty `profile` that OpenSearch itself puts in every
    # response a processor rebuilt (seen on 2.19.1; absent when the processor passes it on).
    assert set(reranked) - set(plain) <= {"profile"}
    assert reranked.get("profile", {"shards": []}) == {"shards": []}
    for hit in reranked["hits"]["hits"]:
        assert set(hit["_source"]) <= {"title", "body", "price"}
    assert_no_score_field(reranked)


NO_TEXT_SEARCHES: dict[str, dict[str, Any]] = {
    "match_all": {"query": {"match_all": {}}},
    "term": {"query": {"term": {"brand": "Alpina"}}},
    "range": {"query": {"range": {"price": {"gte": 20, "lte": 120}}}},
    "knn": {"query": {"knn": {"vector": {"vector": [1.0, 2.0, 3.0, 4.0], "k": 8}}}},
    "empty body": {},
    "hits lacking the fields": {"query": {"match": {"tags": "spare laces"}}},
}


@pytest.mark.parametrize("kind", list(NO_TEXT_SEARCHES))
def test_searches_without_text_pass_through_in_their_order(
    cluster: Cluster, catalog: Attached, kind: str
) -> None:
    body = NO_TEXT_SEARCHES[kind]
    plain = cluster.plain(catalog.index, body)
    reranked = cluster.search(catalog.index, body)
    assert ids(plain), "the search must return hits"
    assert ids(reranked) == ids(plain)
    assert_no_score_field(reranked)


@pytest.mark.parametrize(
    "sort",
    [[{"price": "asc"}], [{"released": {"order": "desc"}}, "_score"], ["brand", {"price": "desc"}]],
)
def test_explicit_sort_keeps_the_clients_order(
    cluster: Cluster, catalog: Attached, sort: list[Any]
) -> None:
    body = {"query": TEXT_QUERIES["multi_match"], "sort": sort, "size": 10}
    plain = cluster.plain(catalog.index, body)
    reranked = cluster.search(catalog.index, body)
    assert len(ids(plain)) >= 3
    assert ids(reranked) == ids(plain)
    assert [h["sort"] for h in reranked["hits"]["hits"]] == [
        h["sort"] for h in plain["hits"]["hits"]
    ]
    assert_no_score_field(reranked)


def test_sort_by_score_is_still_reranked(cluster: Cluster, catalog: Attached) -> None:
    body = {"query": TEXT_QUERIES["multi_match"], "sort": ["_score"], "size": 10}
    plain = cluster.plain(catalog.index, body)
    reranked = cluster.search(catalog.index, body)
    expected = sidecar_order(catalog.sidecar, TEXT_QUERIES["multi_match"], plain["hits"]["hits"])
    assert ids(reranked) == expected
