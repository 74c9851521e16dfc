"""The embedded CPU default: real all-MiniLM-L6-v2 weights, real scores, named a bi-encoder."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import aiohttp

from sidecar.backends.embedded import load_minilm_tokenizer
from tests.support.servers import sidecar_process


async def test_embedded_model_ranks_the_relevant_document_first(
    embedded_sidecar: str, http: aiohttp.ClientSession
) -> None:
    body = {
        "query": "How many people live in Berlin?",
        "documents": [
            "Berlin is well known for its museums.",
            "Berlin had a population of 3,520,031 registered inhabitants.",
            "The weather in Madrid is hot in summer.",
        ],
        "top_n": 2,
        "return_documents": True,
    }
    async with http.post(f"{embedded_sidecar}/v1/rerank", json=body) as response:
        assert response.status == 200
        data = await response.json()
    assert [r["index"] for r in data["results"]] == [1, 0]
    assert data["results"][0]["document"]["text"].startswith("Berlin had")
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in data["results"])
    assert "bi-encoder" in data["model"]
    assert data["meta"]["model_kind"] == "bi-encoder"


async def test_embedded_model_cuts_documents_by_its_own_tokens(
    embedded_sidecar: str, http: aiohttp.ClientSession
) -> None:
    document = "Berlin " + "filler words " * 50
    encoding = load_minilm_tokenizer().encode(document)
    spans = [span for span in encoding.offsets if span != (0, 0)]
    kept_text = document[: spans[3][1]]
    body = {"query": "Berlin", "documents": [document, kept_text], "max_tokens_per_doc": 4}
    async with http.post(f"{embedded_sidecar}/v1/rerank", json=body) as response:
        data = await response.json()
    assert data["meta"]["truncated_documents"] == 1
    scores = {r["index"]: r["relevance_score"] for r in data["results"]}
    assert scores[0] == scores[1]
    async with http.post(
        f"{embedded_sidecar}/v1/rerank", json={"query": "Berlin", "documents": [document]}
    ) as response:
        uncut = (await response.json())["results"][0]["relevance_score"]
    assert uncut != scores[0]


async def test_documents_over_the_models_256_token_limit_are_reported_as_cut(
    embedded_sidecar: str, http: aiohttp.ClientSession
) -> None:
    body = {"query": "Berlin", "documents": ["Berlin " + "word " * 300, "Berlin is big"]}
    async with http.post(f"{embedded_sidecar}/v1/rerank", json=body) as response:
        data = await response.json()
    assert data["meta"]["truncated_documents"] == 1


def test_the_embedded_model_writes_no_progress_bar_to_the_server_log(tmp_path: Path) -> None:
    log = tmp_path / "sidecar.log"
    with sidecar_process(log) as server:
        request = urllib.request.Request(
            f"{server.url}/v1/rerank",
            data=json.dumps({"query": "q", "documents": ["a", "b"]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
    text = log.read_text(errors="replace")
    assert "scoring with all-MiniLM-L6-v2" in text  # the log is the server's, at INFO
    assert "Batches" not in text, text[-2000:]
