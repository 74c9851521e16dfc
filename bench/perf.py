"""The performance figures of issue 10, printed with their goals beside them.

P1 levers: the sidecar on its null backend with each lever of the sidecar's own cost switched on
    in turn (uvloop, tiktoken's core, the document token cache, the score cache, the tokenizer
    process), against the bare echo server, with fresh documents and with documents drawn from a
    fixed catalog (as in e-commerce).
P2-cache: a Zipf(1.1) query stream over the catalog (each query always finds the same 50 products,
    as a search engine would return them), vLLM's own /rerank against the sidecar with its cache.
Stage split: the mean time per stage from the sidecar's own histograms (rerank_stage_seconds).
All servers run side by side on this machine, so compare the ratios; absolute figures move with
the machine's load.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import LoadResult, run_load
from tests.conftest import read_metrics
from tests.support.servers import (
    ServerProcess,
    free_port,
    server_process,
    sidecar_process,
)

CATALOG_SIZE = 2000
DOCS_PER_REQUEST = 50
ZIPF_S = 1.1

# Goals of issue 10 (added p50 in ms; ratios against the direct or the lever-less runs).
GOAL_P1_FRESH_MS = 2.5
GOAL_P1_CATALOG_MS = 1.0
GOAL_P1_C16_RATIO = 2.0
GOAL_P2_CACHE_RATIO = 3.0

_BRANDS = ["Acme", "Nordic", "Zenith", "Orion", "Kobo", "Vela", "Tundra", "Lumen", "Atlas", "Pico"]
_NOUNS = [
    "backpack", "kettle", "headphones", "jacket", "lamp", "blender", "sneakers", "tent", "drill",
    "monitor", "keyboard", "mattress", "stroller", "camera", "watch", "scarf", "grill", "router",
]  # fmt: skip
_WORDS = [
    "waterproof", "lightweight", "stainless", "steel", "wireless", "bluetooth", "cotton", "organic",
    "ergonomic", "adjustable", "compact", "foldable", "rechargeable", "battery", "warranty",
    "durable", "premium", "leather", "recycled", "portable", "quiet", "energy", "efficient",
    "outdoor", "travel", "kids", "kitchen", "office", "gaming", "hiking", "winter", "summer",
    "black", "white", "blue", "large", "small", "set", "pack", "with", "for", "and", "the",
]  # fmt: skip


def catalog(size: int = CATALOG_SIZE, seed: int = 11) -> list[str]:
    """Product listings of ~45 words (title and description)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_BRANDS)} {rng.choice(_NOUNS)} {i}: " + " ".join(rng.choices(_WORDS, k=42))
        for i in range(size)
    ]


def catalog_bodies(count: int, products: Sequence[str], seed: int = 5) -> list[dict[str, Any]]:
    """Distinct queries whose 50 documents come from the catalog: documents repeat, pairs not."""
    rng = random.Random(seed)
    return [
        {
            "query": f"query {i}: {rng.choice(_NOUNS)} " + " ".join(rng.choices(_WORDS, k=3)),
            "documents": rng.sample(list(products), DOCS_PER_REQUEST),
        }
        for i in range(count)
    ]


def zipf_bodies(
    count: int, products: Sequence[str], *, distinct_queries: int = 1000, seed: int = 3
) -> list[dict[str, Any]]:
    """A Zipf(1.1) stream of queries; a query always gets the same 50 products (its 'hits')."""
    rng = random.Random(seed)
    weights = [1 / rank**ZIPF_S for rank in range(1, distinct_queries + 1)]
    bodies = []
    for rank in rng.choices(range(distinct_queries), weights=weights, k=count):
        hits = random.Random(rank).sample(list(products), DOCS_PER_REQUEST)
        bodies.append({"query": f"{_NOUNS[rank % len(_NOUNS)]} {rank}", "documents": hits})
    return bodies


def _row(name: str, result: LoadResult, note: str = "") -> str:
    return (
        f"| {name} | {result.requests_per_s:8.1f} | {result.p50_ms:7.2f} | "
        f"{result.p99_ms:7.2f} | {result.errors} | {note} |"
    )


_TABLE = "| setup | req/s | p50 ms | p99 ms | errors | note |\n|---|---:|---:|---:|---:|---|"

# Each variant adds one lever to the one before; the last is the default configuration.
_NO_CHILD = ("--tokenizer-process", "false")
_NO_CACHES = ("--document-cache-bytes", "0", "--score-cache-bytes", "0", *_NO_CHILD)
_TOKENIZERS_ONLY = ("--tiktoken-core", "false")
LEVERS_OFF = (
    "--event-loop",
    "asyncio",
    "--tokenize-inline-max-chars",
    "0",
    "--server-timing",
    "false",
    *_TOKENIZERS_ONLY,
    *_NO_CACHES,
)
P1_VARIANTS: dict[str, tuple[str, ...]] = {
    "levers off": LEVERS_OFF,
    "+ uvloop": ("--tokenize-inline-max-chars", "0", *_TOKENIZERS_ONLY, *_NO_CACHES),
    "+ small requests tokenized inline": (*_TOKENIZERS_ONLY, *_NO_CACHES),
    "+ tiktoken's BPE core": _NO_CACHES,
    "+ document token cache": ("--score-cache-bytes", "0", *_NO_CHILD),
    "+ score cache": _NO_CHILD,
    "+ tokenizer process (default)": (),
}


@contextmanager
def _echo_server(logs: Path) -> Iterator[ServerProcess]:
    port = free_port()
    with server_process(
        [sys.executable, "-m", "bench.echo_server", str(port)],
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_path=logs / "echo-levers.log",
    ) as process:
        yield ServerProcess(f"http://127.0.0.1:{port}", process.pid)


@dataclass(frozen=True)
class _P1Case:
    name: str
    bodies: list[dict[str, Any]]
    goal_ms: float


async def bench_p1_levers(model_dir: Path, logs: Path, total: int) -> None:
    print("\n## P1 levers: each lever added in turn (null backend, 50 docs/request)\n")
    products = catalog()
    cases = [
        _P1Case("fresh documents", _fresh_bodies(total, seed=29), GOAL_P1_FRESH_MS),
        _P1Case("catalog documents", catalog_bodies(total, products), GOAL_P1_CATALOG_MS),
    ]
    with ExitStack() as stack:
        targets = {"echo": stack.enter_context(_echo_server(logs))}
        for i, (name, args) in enumerate(P1_VARIANTS.items()):
            server = stack.enter_context(
                sidecar_process(
                    logs / f"sidecar-p1-{i}.log",
                    "--backend",
                    "null",
                    "--model",
                    str(model_dir),
                    *args,
                )
            )
            targets[name] = server
        print(_TABLE)
        for case in cases:
            results = await interleaved(targets, case.bodies, concurrency=1)
            floor = results.pop("echo")
            print(_row(f"echo, {case.name}, c=1", floor.load, _cpu(floor)))
            for name, side in results.items():
                added = side.load.p50_ms - floor.load.p50_ms
                note = f"{_goal(added, case.goal_ms)}; {_cpu(side)}"
                print(_row(f"sidecar {name}, {case.name}, c=1", side.load, note))
        # New documents again, so no score is cached from the runs above. The variant before the
        # default shows what the tokenizer process adds, which only acts under load.
        names = list(P1_VARIANTS)
        first, before_last, last = names[0], names[-2], names[-1]
        busy = await interleaved(
            {name: targets[name] for name in (first, before_last, last)},
            _fresh_bodies(total, seed=37),
            concurrency=16,
        )
        for name, side in busy.items():
            print(_row(f"sidecar {name}, fresh documents, c=16", side.load, _cpu(side)))
        ratio = busy[last].load.requests_per_s / busy[first].load.requests_per_s
        print(
            f"\nc=16 throughput, default / levers off: {ratio:.2f}x "
            f"(goal ≥ {GOAL_P1_C16_RATIO:.1f}x; the issue's 'today' was 235 req/s)"
        )
        await print_stage_split(targets[last].url, "P1 default, null backend")


async def interleaved(
    targets: dict[str, ServerProcess],
    bodies: list[dict[str, Any]],
    *,
    concurrency: int,
    rounds: int = 5,
) -> dict[str, Measured]:
    """Each target gets the same bodies, in rounds that alternate between the targets, so a
    change in the machine's load (other processes) weighs on every target alike."""
    share = -(-len(bodies) // rounds)
    parts: dict[str, list[LoadResult]] = {name: [] for name in targets}
    cpu_s = dict.fromkeys(targets, 0.0)
    for start in range(0, len(bodies), share):
        chunk = bodies[start : start + share]
        for name, server in targets.items():
            before = process_cpu_s(server.pid)
            parts[name].append(
                await run_load(
                    f"{server.url}/v1/rerank", chunk, concurrency=concurrency, total=len(chunk)
                )
            )
            cpu_s[name] += process_cpu_s(server.pid) - before
    merged = {}
    for name, results in parts.items():
        result = LoadResult(
            requests=sum(r.requests for r in results),
            errors=sum(r.errors for r in results),
            seconds=sum(r.seconds for r in results),
            latencies_s=[s for r in results for s in r.latencies_s],
            pairs_per_request=results[0].pairs_per_request,
        )
        # The few warm-up requests of each run are in the CPU time too.
        merged[name] = Measured(result, 1000 * cpu_s[name] / result.requests)
    return merged


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    server_cpu_ms: float  # the server process's CPU time per request


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children, running (the tokenizer
    process) or reaped (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    seconds = sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with suppress(OSError):  # it may have ended since
            seconds += process_cpu_s(int(child))
    return seconds


def _cpu(measured: Measured) -> str:
    return f"server CPU {measured.server_cpu_ms:.2f} ms/req"


def _goal(added_ms: float, goal_ms: float) -> str:
    verdict = "met" if added_ms <= goal_ms else "not met"
    return f"added p50 {added_ms:+.2f} ms (goal ≤ {goal_ms} ms: {verdict})"


def _fresh_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """Every document new: request i gets the i-th 50 products of a catalog as large as the run."""
    products = catalog(count * DOCS_PER_REQUEST, seed=seed)
    return [
        {
            "query": f"query {i}: {_NOUNS[i % len(_NOUNS)]} {_WORDS[i % len(_WORDS)]}",
            "documents": products[i * DOCS_PER_REQUEST : (i + 1) * DOCS_PER_REQUEST],
        }
        for i in range(count)
    ]


async def print_stage_split(url: str, label: str) -> None:
    """Mean milliseconds per stage over everything the sidecar served so far."""
    async with aiohttp.ClientSession() as http:
        samples = await read_metrics(http, url)
    print(f"\nStage split ({label}; mean ms per request that reached the stage):\n")
    print("| stage | requests | mean ms |\n|---|---:|---:|")
    for stage in ("admission", "cache", "tokenize", "queue", "backend", "total"):
        count = samples.get(f'rerank_stage_seconds_count{{stage="{stage}"}}', 0.0)
        total = samples.get(f'rerank_stage_seconds_sum{{stage="{stage}"}}', 0.0)
        mean = f"{1000 * total / count:.3f}" if count else "-"
        print(f"| {stage} | {count:.0f} | {mean} |")
    hits, misses = await _cache_counts(url)
    if hits + misses:
        print(f"\nscore cache hit rate: {hits / (hits + misses):.1%} of {hits + misses:.0f} pairs")


async def bench_p2_cache(
    vllm: ServerProcess, sidecar: ServerProcess, total: int, served_model_name: str
) -> None:
    """vLLM /rerank direct against the sidecar with its score cache, on a Zipf query stream.

    Each concurrency gets its own stream from the same distribution, and the cache stays warm
    from one to the next, as it would in service; the hit rate of each run is printed.
    """
    print(f"\n## P2-cache: Zipf({ZIPF_S}) query stream over a {CATALOG_SIZE}-product catalog\n")
    products = catalog()
    print(_TABLE)
    for concurrency in (1, 8, 32):
        bodies = zipf_bodies(total, products, seed=concurrency)
        direct = await run_load(
            f"{vllm.url}/rerank",
            [{"model": served_model_name, **body} for body in bodies],
            concurrency=concurrency,
            total=total,
        )
        before = await _cache_counts(sidecar.url)
        side = await run_load(
            f"{sidecar.url}/v1/rerank", bodies, concurrency=concurrency, total=total
        )
        after = await _cache_counts(sidecar.url)
        hits, misses = after[0] - before[0], after[1] - before[1]
        ratio = side.requests_per_s / direct.requests_per_s
        verdict = "met" if ratio >= GOAL_P2_CACHE_RATIO else "not met"
        print(_row(f"vLLM direct, c={concurrency}", direct))
        note = (
            f"{ratio:.2f}x direct (goal ≥ {GOAL_P2_CACHE_RATIO:.0f}x: {verdict}); "
            f"hit rate {hits / max(1.0, hits + misses):.0%}"
        )
        print(_row(f"via sidecar + cache, c={concurrency}", side, note))
    await print_stage_split(sidecar.url, "P2 and P2-cache via the sidecar, tiny model on vLLM CPU")


async def _cache_counts(url: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as http:
        samples = await read_metrics(http, url)
    hits = sum(v for k, v in samples.items() if k.startswith("rerank_score_cache_hits_total"))
    return hits, samples.get("rerank_score_cache_misses_total", 0.0)
