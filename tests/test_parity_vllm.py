"""Scores through the sidecar and a real vLLM CPU server equal the reference computation.

Reference: transformers AutoModelForCausalLM, softmax over the "yes"/"no" logits at the last
position (Qwen3-Embedding README), on the same tiny Qwen3 model with the real Qwen tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from sidecar.config import QWEN3_DEFAULT_INSTRUCTION, Settings
from tests.conftest import SidecarFactory
from tests.support.reference import ReferenceReranker

pytestmark = pytest.mark.vllm

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "北京是中华人民共和国的首都，也是政治和文化中心。",
    "Beijing (北京) is the capital; Shanghai (上海) is the largest city.",
    "Pandas 🐼 live in Sichuan 🏔️ and eat bamboo 🎋!",
    'Quotes "inside", back\\slashes, a/slash and\nnew lines\ttabs.',
    "x",
]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> ReferenceReranker:
    return ReferenceReranker(tiny_model_dir)


async def rerank(
    http: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> dict[str, float]:
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        assert response.status == 200, await response.text()
        data = await response.json()
    return {r["index"]: r["relevance_score"] for r in data["results"]}


async def test_scores_match_the_reference_for_english_chinese_mixed_and_emoji(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    reference: ReferenceReranker,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings)
    scores = await rerank(http, url, {"query": QUERY, "documents": DOCUMENTS})
    expected = [reference.score(QWEN3_DEFAULT_INSTRUCTION, QUERY, d) for d in DOCUMENTS]
    assert [scores[i] for i in range(len(DOCUMENTS))] == pytest.approx(expected, abs=1e-4)
    # The scores differ from each other by far more than the tolerance: parity means something.
    assert max(expected) - min(expected) > 20 * 1e-4


async def test_chinese_query_and_custom_instruction_match_the_reference(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    reference: ReferenceReranker,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings)
    query, instruction = "中国的首都是哪里？", "Judge whether the passage names a city"
    scores = await rerank(
        http, url, {"query": query, "documents": DOCUMENTS, "instruction": instruction}
    )
    expected = [reference.score(instruction, query, d) for d in DOCUMENTS]
    assert [scores[i] for i in range(len(DOCUMENTS))] == pytest.approx(expected, abs=1e-4)


async def test_truncated_long_document_matches_the_reference_truncation(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    reference: ReferenceReranker,
    http: aiohttp.ClientSession,
) -> None:
    max_length = 200
    url = await start_sidecar(vllm_settings, max_length=max_length)
    long_doc = "Beijing 北京 has a long history of being the capital. " * 80
    body = {"query": QUERY, "documents": [long_doc, DOCUMENTS[0]]}
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        data = await response.json()
    assert data["meta"]["truncated_documents"] == 1
    scores = {r["index"]: r["relevance_score"] for r in data["results"]}
    expected = reference.score(QWEN3_DEFAULT_INSTRUCTION, QUERY, long_doc, max_length=max_length)
    assert scores[0] == pytest.approx(expected, abs=1e-4)
    # The untruncated score is different, so the cut is really what is being compared.
    assert abs(reference.score(QWEN3_DEFAULT_INSTRUCTION, QUERY, long_doc) - expected) > 1e-3


async def test_a_chunked_long_document_scores_the_reference_max_over_its_windows(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    reference: ReferenceReranker,
    http: aiohttp.ClientSession,
) -> None:
    max_length, overlap = 200, 16
    url = await start_sidecar(
        vllm_settings,
        max_length=max_length,
        long_documents="chunk",
        max_windows_per_document=16,
        window_overlap_tokens=overlap,
    )
    # The answer sits at the end, where truncation would cut it off.
    long_doc = "Shanghai is a large port city on the coast. " * 40 + DOCUMENTS[0]
    body = {"query": QUERY, "documents": [long_doc, DOCUMENTS[1]]}
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        assert response.status == 200, await response.text()
        data = await response.json()
    scores = {r["index"]: r["relevance_score"] for r in data["results"]}
    window = max_length - reference.frame_length(QWEN3_DEFAULT_INSTRUCTION, QUERY)
    windows = reference.window_ids(
        QWEN3_DEFAULT_INSTRUCTION, QUERY, long_doc, window=window, overlap=overlap
    )
    assert 2 < len(windows) <= 16
    window_scores = [reference.score_ids(ids) for ids in windows]
    assert scores[0] == pytest.approx(max(window_scores), abs=1e-4)
    assert scores[1] == pytest.approx(
        reference.score(QWEN3_DEFAULT_INSTRUCTION, QUERY, DOCUMENTS[1]), abs=1e-4
    )
    # Every window was scored and billed; none of the document was cut.
    assert data["meta"]["truncated_documents"] == 0
    billed = data["meta"]["billed_units"]["input_tokens"]
    single = len(reference.input_ids(QWEN3_DEFAULT_INSTRUCTION, QUERY, DOCUMENTS[1], max_length))
    assert billed == sum(map(len, windows)) + single
