"""`make bench` / `python -m bench`: P1 (sidecar overhead), P2 and P2-cache (vLLM direct vs via
the sidecar), and the stage split, with the goals of issue 10 beside the figures.

P1: the sidecar on its null backend (real HTTP, validation, Qwen tokenization, batching; no model)
    against a bare aiohttp server that parses and echoes the same 50-document bodies, each lever of
    the sidecar's own cost added in turn (bench/perf.py), fresh and catalog documents.
P2: vLLM's own /rerank (with a correct Qwen3 template, so both compute the same scores) against the
    sidecar in front of the same vLLM server (/classify on token ids), 50 documents per request.
P2-cache: the same on a Zipf(1.1) query stream over a product catalog, the score cache on.
Every process runs on this machine, so the figures compare, side by side, on the same cores.
`--vllm-url URL --model NAME` runs P2 and P2-cache against a vLLM running elsewhere (a GPU).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import LoadResult, run_load
from bench.perf import bench_p1_levers, bench_p2_cache
from tests.support.servers import (
    TINY_SERVED_NAME,
    ServerProcess,
    sidecar_process,
    vllm_cpu_server,
)
from tests.support.tiny_qwen import build_tiny_qwen3

ROOT = Path(__file__).resolve().parent.parent
WORDS = [
    "search",
    "index",
    "query",
    "document",
    "ranking",
    "relevance",
    "vector",
    "cluster",
    "shard",
    "replica",
    "score",
    "bamboo",
    "panda",
    "capital",
    "river",
    "mountain",
    "history",
    "science",
    "engine",
    "model",
    "token",
    "latency",
    "batch",
    "queue",
]


def request_bodies(count: int, n_docs: int = 50, seed: int = 7) -> list[dict[str, Any]]:
    """Distinct bodies (no pair repeats across requests, so dedupe cannot flatter the sidecar)."""
    rng = random.Random(seed)
    return [
        {
            "query": f"request {i}: " + " ".join(rng.choices(WORDS, k=6)),
            "documents": [
                f"doc {i}-{d}: " + " ".join(rng.choices(WORDS, k=40)) for d in range(n_docs)
            ],
        }
        for i in range(count)
    ]


def row(name: str, result: LoadResult) -> str:
    return (
        f"| {name} | {result.requests_per_s:8.1f} | {result.pairs_per_s:9.0f} | "
        f"{result.p50_ms:8.2f} | {result.p99_ms:8.2f} | {result.errors} |"
    )


HEADER = "| setup | req/s | pairs/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|"


async def parity_gap(http: aiohttp.ClientSession, vllm: str, side: str, served: str) -> float:
    body = request_bodies(1, seed=99)[0]
    async with http.post(f"{vllm}/rerank", json={"model": served, **body}) as r:
        direct = {x["index"]: x["relevance_score"] for x in (await r.json())["results"]}
    async with http.post(f"{side}/v1/rerank", json=body) as r:
        ours = {x["index"]: x["relevance_score"] for x in (await r.json())["results"]}
    return max(abs(float(direct[i]) - float(ours[i])) for i in direct)


@dataclass(frozen=True)
class Target:
    """The vLLM to measure: the tiny CPU model started here, or a running one (`--vllm-url`)."""

    model: str
    served_model_name: str
    vllm_url: str | None = None


@contextmanager
def vllm_for(target: Target, logs: Path) -> Iterator[ServerProcess]:
    if target.vllm_url:
        yield ServerProcess(target.vllm_url.rstrip("/"), pid=0)
        return
    template = ROOT / "bench" / "qwen3_reranker.jinja"
    with vllm_cpu_server(
        Path(target.model), logs / "vllm.log", extra_args=["--chat-template", str(template)]
    ) as vllm:
        yield vllm


async def bench_p2(target: Target, logs: Path, per_client: int, cache_requests: int) -> None:
    print(f"\n## P2: vLLM /rerank direct vs through the sidecar ({target.served_model_name})\n")
    served = target.served_model_name
    with (
        vllm_for(target, logs) as vllm,
        sidecar_process(
            logs / "sidecar-vllm.log",
            "--vllm-url",
            vllm.url,
            "--model",
            target.model,
            "--served-model-name",
            served,
        ) as sidecar_server,
    ):
        url = sidecar_server.url
        async with aiohttp.ClientSession() as http:
            gap = await parity_gap(http, vllm.url, url, served)
            print(f"score parity, vLLM /rerank vs sidecar: max |Δ| = {gap:.2e}\n")
        print(HEADER)
        for concurrency in (1, 8, 32):
            total = max(30, per_client * concurrency)
            bodies = request_bodies(total, seed=concurrency)
            direct = await run_load(
                f"{vllm.url}/rerank",
                [{"model": served, **b} for b in bodies],
                concurrency=concurrency,
                total=total,
            )
            side = await run_load(f"{url}/v1/rerank", bodies, concurrency=concurrency, total=total)
            print(row(f"vLLM direct, c={concurrency}", direct))
            print(row(f"via sidecar, c={concurrency}", side))
            ratio = side.requests_per_s / direct.requests_per_s
            print(
                f"| → sidecar / direct, c={concurrency} | {ratio:.2f}x | | "
                f"{side.p50_ms / direct.p50_ms:.2f}x | {side.p99_ms / direct.p99_ms:.2f}x | |"
            )
        print("\n(goal: ≥ 1.0x throughput and ≤ 1.0x p50 at every concurrency)")
        await bench_p2_cache(vllm, sidecar_server, cache_requests, served)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=["p1", "p2"], help="run one benchmark")
    parser.add_argument("--p1-requests", type=int, default=400, help="requests per P1 run")
    parser.add_argument(
        "--p2-requests-per-client", type=int, default=3, help="P2 requests per client"
    )
    parser.add_argument(
        "--p2-cache-requests", type=int, default=120, help="requests per P2-cache run"
    )
    parser.add_argument(
        "--vllm-url",
        help="measure P2 against this running vLLM (e.g. a GPU) instead of the tiny CPU model",
    )
    parser.add_argument(
        "--model", help="with --vllm-url: the model name or directory (its tokenizer is read)"
    )
    parser.add_argument("--served-model-name", help="with --vllm-url: the name vLLM serves")
    args = parser.parse_args()
    if args.vllm_url and not args.model:
        parser.error("--vllm-url needs --model")
    model_dir = build_tiny_qwen3(ROOT / ".bench-cache" / "tiny-qwen3")
    target = (
        Target(args.model, args.served_model_name or args.model, args.vllm_url)
        if args.vllm_url
        else Target(str(model_dir), TINY_SERVED_NAME)
    )
    logs = Path(tempfile.mkdtemp(prefix="rerank-bench-"))
    print(f"# rerank-sidecar bench ({os.cpu_count()} CPUs; logs in {logs})")
    if args.only in (None, "p1"):
        asyncio.run(bench_p1_levers(model_dir, logs, args.p1_requests))
    if args.only in (None, "p2"):
        asyncio.run(bench_p2(target, logs, args.p2_requests_per_client, args.p2_cache_requests))


if __name__ == "__main__":
    main()
