"""`make demo` on the real node: the catalog indexed, set up, the side-by-side report."""

from __future__ import annotations

import io

import pytest

from demo.catalog import load_demo_data
from demo.report import index_catalog, query_body, run_demo
from tests.cluster.conftest import Cluster, es_integration, post_json
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.cluster, pytest.mark.vllm]

REQUIRED = ["waterproof hiking boots", "适合夏天穿的透气运动鞋", "送给妈妈的母亲节礼物推荐"]


def test_demo_report_on_the_real_node(cluster: Cluster, qwen_sidecar: ServerProcess) -> None:
    index = "demo-products"
    data = load_demo_data()
    assert index_catalog(cluster.url, index) == len(data.products) >= 200
    es_integration(
        "setup", "--url", cluster.url, "--sidecar-url", qwen_sidecar.url, "--index", index,
        "--fields", "title,description", "--name", "rr-demo", "--yes",
    )  # fmt: skip
    out = io.StringIO()
    result = run_demo(
        cluster.url, index, backend_label="tiny Qwen3", out=out, english_centric_model=False
    )
    texts = [row.query.text for row in result.rows]
    assert set(REQUIRED) <= set(texts) and len(texts) >= 6
    for row in result.rows:
        # One client body for both sides: the reranked page is the BM25 page, reordered by the
        # sidecar's own scores for that query.
        assert sorted(h.id for h in row.reranked) == sorted(h.id for h in row.bm25)
        hits = cluster.plain(index, query_body(row.query.text))["hits"]["hits"]
        status, answer = post_json(
            f"{qwen_sidecar.url}/v1/rerank/query-dsl",
            {
                "query": query_body(row.query.text)["query"],
                "documents": [hit["_source"] for hit in hits],
                "fields": ["title", "description"],
            },
        )
        assert status == 200
        order = sorted(range(len(hits)), key=lambda i: -answer["scores"][i])
        assert [h.id for h in row.reranked] == [hits[i]["_id"] for i in order]
        assert min(row.bm25_ms + row.reranked_ms) > 0
    printed = out.getvalue()
    for text in REQUIRED:
        assert text in printed
    assert "median" in printed
    es_integration("teardown", "--url", cluster.url, "--name", "rr-demo", "--yes")
