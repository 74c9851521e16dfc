"""`python -m bench.cluster`: the real OpenSearch node's start time and memory, and the search
latency of the same 50-hit query with and without the rerank pipeline, embedded and tiny-vLLM.

Everything runs on this machine (node, vLLM, sidecar, client on the same two cores): the figures
compare side by side; on a GPU the model time, not the pipeline, dominates.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opensearchpy import OpenSearch

from bench.__main__ import WORDS
from opensearch_node.node import running_node
from tests.support.servers import TINY_SERVED_NAME, ServerProcess, sidecar_process, vllm_cpu_server
from tests.support.tiny_qwen import build_tiny_qwen3

INDEX = "bench"
DOCUMENTS = 2000
HITS = 50
RUNS = 30


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the node runs under setpriv)."""
    out = subprocess.run(["ps", "-o", "rss=", "--pid", str(pid), "--ppid", str(pid)],
                         capture_output=True, text=True, check=False).stdout  # fmt: skip
    return sum(int(value) for value in out.split()) / 1024


def fill(client: OpenSearch) -> None:
    rng = random.Random(11)
    client.indices.create(
        index=INDEX,
        body={"mappings": {"properties": {"title": {"type": "text"}, "body": {"type": "text"}}}},
    )
    lines: list[dict[str, object]] = []
    for number in range(DOCUMENTS):
        lines.append({"index": {"_index": INDEX, "_id": str(number)}})
        lines.append(
            {"title": " ".join(rng.choices(WORDS, k=5)), "body": " ".join(rng.choices(WORDS, k=40))}
        )
    client.bulk(body=lines, refresh=True)


def p50_ms(client: OpenSearch, **params: str) -> float:
    body = {"query": {"match": {"body": "search ranking relevance"}}, "size": HITS}
    client.search(index=INDEX, body=body, params=params)  # warm-up
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        result = client.search(index=INDEX, body=body, params=params)
        times.append((time.perf_counter() - started) * 1000)
        assert len(result["hits"]["hits"]) == HITS
    return statistics.median(times)


def attach(url: str, sidecar: ServerProcess) -> None:
    command = [sys.executable, "-m", "es_integration", "opensearch", "setup", "--url", url,
               "--sidecar-url", sidecar.url, "--index", INDEX, "--fields", "title,body",
               "--yes"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)


def measure(client: OpenSearch, url: str, label: str, log: Path, args: list[str]) -> None:
    with sidecar_process(log, *args) as sidecar:
        attach(url, sidecar)
        plain, reranked = p50_ms(client, search_pipeline="_none"), p50_ms(client)
    print(f"| {label} | {plain:.1f} | {reranked:.1f} | +{reranked - plain:.1f} |", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        with running_node() as node:
            start_s = time.perf_counter() - started
            client = OpenSearch(hosts=[node.url], timeout=120)
            fill(client)
            print(f"node: OpenSearch {node.version} ready in {start_s:.1f} s; RSS "
                  f"{rss_mb(node.pid):.0f} MB after indexing {DOCUMENTS} documents")  # fmt: skip
            print("\n| backend | search p50 ms, no pipeline | with rerank pipeline | added |")
            print("|---|---:|---:|---:|")
            embedded = ["--backend", "embedded"]
            measure(client, node.url, "embedded MiniLM", workdir / "embedded.log", embedded)
            model = build_tiny_qwen3(workdir / "tiny-qwen3")
            with vllm_cpu_server(model, workdir / "vllm.log") as vllm:
                qwen = ["--vllm-url", vllm.url, "--model", str(model),
                        "--served-model-name", TINY_SERVED_NAME]  # fmt: skip
                measure(client, node.url, "tiny Qwen3 on vLLM", workdir / "qwen.log", qwen)
            print(f"\nnode RSS at the end: {rss_mb(node.pid):.0f} MB; {HITS} hits, "
                  f"median of {RUNS} searches each")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
