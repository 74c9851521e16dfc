"""The sidecar behind an ML Commons connector with the built-in Cohere rerank functions.

`tests.support.ml_commons` re-implements the request filling, the Cohere pre/post-process
functions and the rerank processor's rescoring (docs/contracts.md §1-§2), and these tests replay
exactly the bytes a connector would send (the real node runs the same path in tests/cluster).
"""

from __future__ import annotations

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory
from tests.support.ml_commons import (
    COHERE_BLUEPRINT_BODY,
    cohere_rerank_parameters,
    cohere_rerank_post_process,
    create_payload,
    rerank_hits,
)

TRICKY_DOCUMENTS = [
    'He said "yes" and left',
    "C:\\path\\to\\file and a back\\slash",
    "http://example.com/a/b </script>",
    "line one\nline two\r\n\ttabbed",
    "naïve café — 北京 🐼 \u2028 \x7f",
    "",
]


async def post_like_ml_commons(
    http: aiohttp.ClientSession, url: str, query: str, documents: list[str]
) -> list[float | None]:
    body = create_payload(
        COHERE_BLUEPRINT_BODY, cohere_rerank_parameters(query, documents, model="qwen3-reranker")
    )
    async with http.post(
        f"{url}/v1/rerank", data=body.encode(), headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 200, await response.text()
        return cohere_rerank_post_process(await response.read())


async def test_escaped_blueprint_body_scores_the_original_texts(
    embedded_sidecar: str, http: aiohttp.ClientSession
) -> None:
    query = 'what is "C:\\path" / 北京 🐼?'
    scores = await post_like_ml_commons(http, embedded_sidecar, query, TRICKY_DOCUMENTS)
    async with http.post(
        f"{embedded_sidecar}/v1/rerank", json={"query": query, "documents": TRICKY_DOCUMENTS}
    ) as response:
        direct = {r["index"]: r["relevance_score"] for r in (await response.json())["results"]}
    assert scores == [direct[i] for i in range(len(TRICKY_DOCUMENTS))]


async def test_hits_come_back_reordered_by_the_sidecar_scores(
    embedded_sidecar: str, http: aiohttp.ClientSession
) -> None:
    hits = [
        {"_id": "bananas", "_source": {"body": "Bananas are yellow fruit rich in potassium."}},
        {"_id": "beijing", "_source": {"body": "Beijing is the capital city of China."}},
        {"_id": "gravity", "_source": {"body": "Gravity pulls objects toward the earth."}},
    ]
    documents = [hit["_source"]["body"] for hit in hits]
    scores = await post_like_ml_commons(http, embedded_sidecar, "capital of China", documents)
    reranked = rerank_hits(hits, scores)
    assert reranked[0]["_id"] == "beijing"
    assert [hit["_score"] for hit in reranked] == sorted(scores, reverse=True)


@pytest.mark.vllm
async def test_cross_encoder_scores_through_the_cohere_functions(
    start_sidecar: SidecarFactory, vllm_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(vllm_settings)
    documents = [*TRICKY_DOCUMENTS, *(f"document number {i}" for i in range(44))]
    scores = await post_like_ml_commons(http, url, "which document?", documents)
    assert len(scores) == 50
    assert all(0.0 <= score <= 1.0 for score in scores)
