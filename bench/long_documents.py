"""`python -m bench.long_documents`: what chunking costs per long document, against truncating it.

    .venv/bin/python -m bench.long_documents [--max-length 512] [--requests 40]
        [--vllm-url URL --model NAME]

One sidecar truncates, one chunks (`--long-documents chunk`, 8 windows of at most `--max-length`
tokens, 64 shared), both in front of the same vLLM (the tiny Qwen3 on the CPU unless `--vllm-url`).
Each request reranks 10 product pages of ~2,000 tokens against a distinct query (so the score cache
never answers); the requests alternate between the two sidecars. Printed: pairs and tokens
scored per document, and the p50 latency of a request, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.perf import _NOUNS, _WORDS
from tests.conftest import read_metrics
from tests.support.servers import TINY_SERVED_NAME, ServerProcess, sidecar_process, vllm_cpu_server
from tests.support.tiny_qwen import build_tiny_qwen3

DOCUMENTS = 10
PAGE_WORDS = 1500  # ~2,000 tokens


def pages(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        f"{rng.choice(_NOUNS)} manual, page {i}: " + " ".join(rng.choices(_WORDS, k=PAGE_WORDS))
        for i in range(DOCUMENTS)
    ]


async def measure(url: str, body: dict[str, object], http: aiohttp.ClientSession) -> float:
    started = time.perf_counter()
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        assert response.status == 200, await response.text()
        await response.read()
    return time.perf_counter() - started


async def run(sidecars: dict[str, ServerProcess], requests: int) -> None:
    documents = pages(7)
    latencies: dict[str, list[float]] = {name: [] for name in sidecars}
    async with aiohttp.ClientSession() as http:
        for i in range(requests):
            query = f"how to clean the {_NOUNS[i % len(_NOUNS)]} {i}"
            body: dict[str, object] = {"query": query, "documents": documents}
            for name, server in sidecars.items():
                latencies[name].append(await measure(server.url, body, http))
        print(f"long documents: {requests} requests of {DOCUMENTS} pages (~2,000 tokens each)\n")
        print("| mode | pairs per document | tokens per document | p50 ms per request |")
        print("|---|---:|---:|---:|")
        for name, server in sidecars.items():
            metrics = await read_metrics(http, server.url)
            pairs = metrics["rerank_batch_pairs_sum"] / (requests * DOCUMENTS)
            tokens = metrics["rerank_batch_tokens_sum"] / (requests * DOCUMENTS)
            p50 = statistics.median(latencies[name]) * 1000
            print(f"| {name} | {pairs:.1f} | {tokens:,.0f} | {p50:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--vllm-url")
    parser.add_argument("--model", help="with --vllm-url: the model (tokenizer) it serves")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        model = args.model or str(build_tiny_qwen3(logs / "tiny-qwen3"))
        served = args.model or TINY_SERVED_NAME
        if args.vllm_url:
            vllm_url = args.vllm_url.rstrip("/")
            asyncio.run(sidecars_and_run(vllm_url, model, served, logs, args))
        else:
            with vllm_cpu_server(Path(model), logs / "vllm.log") as vllm:
                asyncio.run(sidecars_and_run(vllm.url, model, served, logs, args))


async def sidecars_and_run(
    vllm_url: str, model: str, served: str, logs: Path, args: argparse.Namespace
) -> None:
    common = ["--vllm-url", vllm_url, "--model", model, "--served-model-name", served,
              "--max-length", str(args.max_length)]  # fmt: skip
    with (
        sidecar_process(logs / "truncate.log", *common) as truncating,
        sidecar_process(logs / "chunk.log", *common, "--long-documents", "chunk") as chunking,
    ):
        await run({"truncate": truncating, "chunk (8 windows)": chunking}, args.requests)


if __name__ == "__main__":
    main()
