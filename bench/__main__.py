"""`make bench` / `python -m bench`: P1 (sidecar overhead) and P2 (vLLM direct vs via the sidecar).

P1: the sidecar on its null backend (real HTTP, validation, Qwen tokenization, batching; no model)
    against a bare aiohttp server that parses and echoes the same 50-document bodies.
P2: vLLM's own /rerank (with a correct Qwen3 template, so both compute the same scores) against the
    sidecar in front of the same vLLM server (/classify on token ids), 50 documents per request.
Every process runs on this machine, so the figures compare, side by side, on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import LoadResult, run_load
from tests.support.servers import (
    TINY_SERVED_NAME,
    free_port,
    server_process,
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


async def bench_p1(model_dir: Path, logs: Path, total: int) -> None:
    print(
        "\n## P1: sidecar overhead (null backend) vs a bare aiohttp echo server, 50 docs/request\n"
    )
    echo_port = free_port()
    bodies = request_bodies(total)
    with (
        server_process(
            [sys.executable, "-m", "bench.echo_server", str(echo_port)],
            health_url=f"http://127.0.0.1:{echo_port}/healthz",
            log_path=logs / "echo.log",
        ),
        sidecar_process(
            logs / "sidecar-null.log", "--backend", "null", "--model", str(model_dir)
        ) as sidecar_server,
    ):
        url = sidecar_server.url
        print(HEADER)
        for concurrency in (1, 16):
            echo = await run_load(
                f"http://127.0.0.1:{echo_port}/v1/rerank",
                bodies,
                concurrency=concurrency,
                total=total,
            )
            side = await run_load(f"{url}/v1/rerank", bodies, concurrency=concurrency, total=total)
            print(row(f"echo, c={concurrency}", echo))
            print(row(f"sidecar null, c={concurrency}", side))
            ratio = side.requests_per_s / echo.requests_per_s
            print(
                f"| → added by the sidecar, c={concurrency} | ratio {ratio:.2f} | "
                f"| +{side.p50_ms - echo.p50_ms:.2f} | +{side.p99_ms - echo.p99_ms:.2f} | |"
            )


async def parity_gap(http: aiohttp.ClientSession, vllm: str, side: str) -> float:
    body = request_bodies(1, seed=99)[0]
    async with http.post(f"{vllm}/rerank", json={"model": TINY_SERVED_NAME, **body}) as r:
        direct = {x["index"]: x["relevance_score"] for x in (await r.json())["results"]}
    async with http.post(f"{side}/v1/rerank", json=body) as r:
        ours = {x["index"]: x["relevance_score"] for x in (await r.json())["results"]}
    return max(abs(float(direct[i]) - float(ours[i])) for i in direct)


async def bench_p2(model_dir: Path, logs: Path, per_client: int) -> None:
    print(
        "\n## P2: vLLM /rerank direct vs through the sidecar (tiny Qwen3, CPU, 50 docs/request)\n"
    )
    template = ROOT / "bench" / "qwen3_reranker.jinja"
    with (
        vllm_cpu_server(
            model_dir, logs / "vllm.log", extra_args=["--chat-template", str(template)]
        ) as vllm,
        sidecar_process(
            logs / "sidecar-vllm.log",
            "--vllm-url",
            vllm.url,
            "--model",
            str(model_dir),
            "--served-model-name",
            TINY_SERVED_NAME,
        ) as sidecar_server,
    ):
        url = sidecar_server.url
        async with aiohttp.ClientSession() as http:
            gap = await parity_gap(http, vllm.url, url)
            print(f"score parity, vLLM /rerank vs sidecar: max |Δ| = {gap:.2e}\n")
        print(HEADER)
        for concurrency in (1, 8, 32):
            total = max(30, per_client * concurrency)
            bodies = request_bodies(total, seed=concurrency)
            direct = await run_load(
                f"{vllm.url}/rerank",
                [{"model": TINY_SERVED_NAME, **b} for b in bodies],
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", choices=["p1", "p2"], help="run one benchmark")
    parser.add_argument("--p1-requests", type=int, default=400, help="requests per P1 run")
    parser.add_argument(
        "--p2-requests-per-client", type=int, default=3, help="P2 requests per client"
    )
    args = parser.parse_args()
    model_dir = build_tiny_qwen3(ROOT / ".bench-cache" / "tiny-qwen3")
    logs = Path(tempfile.mkdtemp(prefix="rerank-bench-"))
    print(f"# rerank-sidecar bench ({os.cpu_count()} CPUs; logs in {logs})")
    if args.only in (None, "p1"):
        asyncio.run(bench_p1(model_dir, logs, args.p1_requests))
    if args.only in (None, "p2"):
        asyncio.run(bench_p2(model_dir, logs, args.p2_requests_per_client))


if __name__ == "__main__":
    main()
