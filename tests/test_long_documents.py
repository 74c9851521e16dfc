"""Long documents split into windows, through a real sidecar on loopback (null backend: the real
tokenizer, admission, batcher and HTTP; scores without a model). Scores against the reference
model are in test_parity_vllm.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory, read_metrics

LONG = "a waterproof hiking backpack with a rain cover and a laptop sleeve. " * 60
SHORT = "a kettle"


@pytest.fixture
def null_settings(tiny_model_dir: Path) -> Settings:
    return Settings(backend="null", model=str(tiny_model_dir), max_length=256)


async def rerank(http: aiohttp.ClientSession, url: str, **body: Any) -> tuple[int, dict[str, Any]]:
    async with http.post(f"{url}/v1/rerank", json={"query": "backpack", **body}) as response:
        return response.status, await response.json()


async def test_truncate_is_the_default_and_chunk_scores_every_window(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    truncating = await start_sidecar(null_settings)
    status, cut = await rerank(http, truncating, documents=[LONG, SHORT])
    assert status == 200 and cut["meta"]["truncated_documents"] == 1
    assert (await read_metrics(http, truncating))["rerank_batch_pairs_sum"] == 2

    chunking = await start_sidecar(null_settings, long_documents="chunk")
    status, split = await rerank(http, chunking, documents=[LONG, SHORT])
    assert status == 200 and split["meta"]["truncated_documents"] == 0
    pairs = (await read_metrics(http, chunking))["rerank_batch_pairs_sum"]
    assert 3 < pairs <= 1 + 8  # the long one's windows (at most 8 by default), and the short one
    assert (
        split["meta"]["billed_units"]["input_tokens"] > cut["meta"]["billed_units"]["input_tokens"]
    )


async def test_a_request_asks_for_windows_the_cohere_way_within_the_bound(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, max_windows_per_document=3)
    status, data = await rerank(http, url, documents=[LONG], max_chunks_per_doc=50)
    assert status == 200
    # Three windows do not reach the end: the document is cut after them, and says so.
    assert data["meta"]["truncated_documents"] == 1
    assert (await read_metrics(http, url))["rerank_batch_pairs_sum"] == 3
    status, data = await rerank(http, url, documents=[LONG], max_chunks_per_doc=0)
    assert status == 422 and "max_chunks_per_doc" in data["error"]["message"]


async def test_windows_and_cut_documents_are_cached_apart(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    _, cut = await rerank(http, url, documents=[LONG])
    _, split = await rerank(http, url, documents=[LONG], max_chunks_per_doc=4)
    metrics = await read_metrics(http, url)
    assert metrics['rerank_score_cache_hits_total{tier="memory"}'] == 0
    assert split["meta"]["billed_units"] != cut["meta"]["billed_units"]


async def test_windows_are_cut_to_fit_the_queue_not_refused_forever(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(
        null_settings, long_documents="chunk", max_documents=2, max_queue_pairs=4
    )
    # 8 windows a document would be 16 pairs in a queue of 4: 2 a document fit, the rest is cut.
    status, data = await rerank(http, url, documents=[LONG, SHORT])
    assert status == 200 and data["meta"]["truncated_documents"] == 1
    assert (await read_metrics(http, url))["rerank_batch_pairs_sum"] == 3
    status, _ = await rerank(http, url, documents=[SHORT, SHORT])
    assert status == 200  # nothing was left counted
