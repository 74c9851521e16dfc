"""The rerank window on the real node: `setup --rerank-window 50` (recall many, rerank the top 50,
show the page asked for).

The sidecar is the embedded MiniLM model, which knows what "waterproof hiking boots" means: the
index holds 40 souvenirs whose titles repeat "hiking boots" (BM25 ranks them first), 20 weaker
souvenirs, and one real pair of boots described in other words, which BM25 ranks 41st.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import (
    FIELDS,
    Cluster,
    changed_ids,
    es_integration,
    ids,
    post_json,
    setup_args,
)
from tests.conftest import read_metrics_sync
from tests.support.servers import ServerProcess, sidecar_process

pytestmark = pytest.mark.cluster

INDEX = "window-shop"
WINDOW = 50
QUERY = {"multi_match": {"query": "waterproof hiking boots", "fields": FIELDS}}
BOOTS = "w60"
_THINGS = ("keychain", "sticker", "poster", "mug", "magnet", "patch", "pin", "postcard", "coaster")


def documents() -> list[dict[str, str]]:
    docs = []
    for number in range(60):
        thing = _THINGS[number % len(_THINGS)]
        if number < 40:
            title = f"Hiking boots {thing} #{number}"
            body = f"A {thing} printed with a boots and hiking logo, model {number}."
        else:
            title = f"Hiking {thing} #{number}"
            body = f"A {thing} with a long printed mountain hiking scene, collector model {number}."
        docs.append({"title": title, "body": body})
    docs.append(
        {
            "title": "Gore-Tex leather mountain footwear",
            "body": "Keeps your feet completely dry on wet trails, in rain and snow: sturdy "
            "boots for long hikes.",
        }
    )
    return docs


@pytest.fixture(scope="module")
def shop(cluster: Cluster) -> Iterator[str]:
    nodes = cluster.client.transport.perform_request("GET", "/_nodes/search_pipelines")["nodes"]
    for node in nodes.values():
        if "oversample" not in {p["type"] for p in node["search_pipelines"]["request_processors"]}:
            pytest.skip("this node has no search-pipeline-common (not on Maven Central for it)")
    cluster.client.indices.create(
        index=INDEX,
        body={
            "settings": {"number_of_shards": 1},
            "mappings": {"properties": {name: {"type": "text"} for name in FIELDS}},
        },
    )
    for number, document in enumerate(documents()):
        cluster.client.index(index=INDEX, id=f"w{number:02d}", body=document)
    cluster.client.indices.refresh(index=INDEX)
    yield INDEX
    cluster.client.indices.delete(index=INDEX)


@pytest.fixture(scope="module")
def windowed(
    cluster: Cluster, shop: str, embedded_sidecar_process: ServerProcess
) -> Iterator[dict[str, Any]]:
    args = setup_args(
        cluster, embedded_sidecar_process.url, shop, "win", "--rerank-window", str(WINDOW)
    )
    report = es_integration(*args)
    yield report
    es_integration("teardown", "--url", cluster.url, "--name", "win", "--yes")


def search(cluster: Cluster, start: int | None, size: int | None, **extra: Any) -> list[str]:
    body: dict[str, Any] = {"query": QUERY, **extra}
    if start is not None:
        body["from"] = start
    if size is not None:
        body["size"] = size
    return ids(cluster.search(INDEX, body))


def expected_ranking(cluster: Cluster, sidecar: str) -> list[str]:
    """BM25's top 50 in the sidecar's order (asked directly), then BM25's order."""
    hits = cluster.plain(INDEX, {"query": QUERY, "size": 100})["hits"]["hits"]
    status, answer = post_json(
        f"{sidecar}/v1/rerank/query-dsl",
        {"query": QUERY, "documents": [h["_source"] for h in hits[:WINDOW]], "fields": FIELDS},
    )
    assert status == 200, answer
    order = sorted(range(WINDOW), key=lambda i: -answer["scores"][i])
    return [hits[i]["_id"] for i in order] + [hit["_id"] for hit in hits[WINDOW:]]


def test_a_document_bm25_ranks_41st_comes_back_first(
    cluster: Cluster, windowed: dict[str, Any]
) -> None:
    plain = ids(cluster.plain(INDEX, {"query": QUERY, "size": 100}))
    assert plain.index(BOOTS) == 40
    # No from or size in the search: OpenSearch's first page of 10.
    assert search(cluster, None, None)[0] == BOOTS


def test_pages_are_slices_of_one_ranking(
    cluster: Cluster, windowed: dict[str, Any], embedded_sidecar_process: ServerProcess
) -> None:
    ranking = expected_ranking(cluster, embedded_sidecar_process.url)
    pages = [search(cluster, start, 10) for start in range(0, 60, 10)]
    assert [hit for page in pages for hit in page] == ranking[:60]
    # A page across the window's end: its reranked part, then BM25's order.
    assert search(cluster, 45, 10) == ranking[45:55]
    assert search(cluster, 7, 3) == ranking[7:10]
    # A _source filter keeps the window (hits without a field are scored without it).
    assert search(cluster, 10, 10, _source=["title", "body"]) == ranking[10:20]
    metrics = read_metrics_sync(embedded_sidecar_process.url)
    assert metrics['rerank_window_plans_total{decision="windowed"}'] >= 7
    assert metrics['rerank_window_plans_total{decision="beyond_window"}'] >= 1


def test_scores_and_totals_are_the_searchs_own(cluster: Cluster, windowed: dict[str, Any]) -> None:
    result = cluster.search(INDEX, {"query": QUERY, "from": 10, "size": 5})
    hits = result["hits"]["hits"]
    assert len(hits) == 5 and result["hits"]["total"]["value"] == 61
    scores = [hit["_score"] for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all("rerank_sidecar_score" not in hit["_source"] for hit in hits)


@pytest.mark.parametrize(
    "body",
    [
        {"query": QUERY, "sort": [{"_doc": "desc"}]},
        {"query": {"match_all": {}}},
        {"query": QUERY, "size": 0, "aggs": {"n": {"terms": {"field": "_index"}}}},
        # by_field fails without a total or without the fields: not rewritten, not page 1.
        {"query": QUERY, "track_total_hits": False},
        {"query": QUERY, "_source": False},
    ],
    ids=["sorted", "no-text", "size-0", "no-total", "no-source"],
)
def test_searches_it_cannot_rerank_get_their_usual_page(
    cluster: Cluster, windowed: dict[str, Any], body: dict[str, Any]
) -> None:
    page = {"from": 10, "size": 5, **body}
    assert ids(cluster.search(INDEX, page)) == ids(cluster.plain(INDEX, page))


def test_setup_is_idempotent_and_teardown_removes_the_window(
    cluster: Cluster, shop: str, tiny_model_dir: Path, tmp_path: Path
) -> None:
    null_sidecar = ["--backend", "null", "--model", str(tiny_model_dir)]
    with sidecar_process(tmp_path / "null.log", *null_sidecar) as sidecar:
        args = setup_args(cluster, sidecar.url, shop, "win-down", "--rerank-window", "50")
        first = es_integration(*args)
        assert "win-down-rerank-window" in changed_ids(first, "connector")
        again = es_integration(*args)
        assert {c["action"] for c in again["changes"]} <= {"unchanged", "reused"}
    # The sidecar is gone: no rewrite, no rerank, each page is BM25's.
    for start in (0, 10, 20):
        body = {"query": QUERY, "from": start, "size": 10}
        assert ids(cluster.search(shop, body, search_pipeline="win-down")) == ids(
            cluster.plain(shop, body)
        )
    report = es_integration("teardown", "--url", cluster.url, "--name", "win-down", "--yes")
    deleted = {(c["resource"], c["name"]) for c in report["changes"] if c["action"] == "deleted"}
    assert ("connector", "win-down-rerank-window") in deleted
    assert ("model", "win-down-rerank-window") in deleted
