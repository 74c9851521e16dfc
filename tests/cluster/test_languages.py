"""Language-aware fields on the real node: `setup --fields-by-language` with the demo catalog.

The catalog's `title`/`description` are in each product's own language (zh, es, en) and
`title_en`/`description_en` are English. A Chinese or Spanish search is reranked on the native
fields, any other on the English ones: the sidecar detects the query's language (counted in
`rerank_query_languages_total`), and every reranked hit's score is the one the sidecar gives
for those fields when called directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from demo.report import index_catalog, query_body
from tests.cluster.conftest import Cluster, es_integration, post_json
from tests.conftest import read_metrics_sync
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.cluster, pytest.mark.vllm]

INDEX = "lang-products"
NATIVE = ["title", "description"]
ENGLISH = ["title_en", "description_en"]
BY_LANGUAGE = "zh=title,description es=title,description default=title_en,description_en"


@pytest.fixture(scope="module")
def by_language(cluster: Cluster, qwen_sidecar: ServerProcess) -> Iterator[str]:
    index_catalog(cluster.url, INDEX)
    es_integration(
        "setup", "--url", cluster.url, "--sidecar-url", qwen_sidecar.url, "--index", INDEX,
        "--fields-by-language", BY_LANGUAGE, "--name", "rr-lang", "--yes",
    )  # fmt: skip
    yield INDEX
    es_integration("teardown", "--url", cluster.url, "--name", "rr-lang", "--yes")


def languages_counted(sidecar: str) -> dict[str, float]:
    prefix = "rerank_query_languages_total"
    return {
        name.partition('language="')[2].rstrip('"}'): value
        for name, value in read_metrics_sync(sidecar).items()
        if name.startswith(prefix)
    }


@pytest.mark.parametrize(
    ("text", "language", "fields"),
    [
        ("适合夏天穿的透气运动鞋", "zh", NATIVE),
        ("regalo para mi padre que le gusta cocinar", "es", NATIVE),
        ("waterproof hiking boots", "default", ENGLISH),
    ],
)
def test_a_search_is_reranked_on_the_fields_in_its_language(
    cluster: Cluster,
    qwen_sidecar: ServerProcess,
    by_language: str,
    text: str,
    language: str,
    fields: list[str],
) -> None:
    body: dict[str, Any] = query_body(text)
    before = languages_counted(qwen_sidecar.url)
    reranked = cluster.search(by_language, body)["hits"]["hits"]
    after = languages_counted(qwen_sidecar.url)
    assert after.get(language, 0) - before.get(language, 0) == 1
    assert len(reranked) > 1
    hits = cluster.plain(by_language, body)["hits"]["hits"]
    status, answer = post_json(
        f"{qwen_sidecar.url}/v1/rerank/query-dsl",
        {"query": body["query"], "documents": [hit["_source"] for hit in hits], "fields": fields},
    )
    assert status == 200, answer
    expected = {hit["_id"]: score for hit, score in zip(hits, answer["scores"], strict=True)}
    for hit in reranked:
        assert hit["_score"] == pytest.approx(expected[hit["_id"]], rel=1e-5, abs=1e-7)
