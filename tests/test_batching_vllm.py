"""Cross-request batching against a real vLLM CPU server: fewer backend calls, no cross-talk,
dedupe, dropped work for clients that left, deadlines when vLLM stalls (paused with SIGSTOP)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory, read_metrics
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.vllm


def request_body(i: int) -> dict[str, object]:
    return {
        "query": f"query number {i}",
        "documents": [f"shared document {d}" for d in range(4)]
        + [f"own document {i}-{d}" for d in range(4)],
    }


async def scores_in_input_order(
    http: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> list[float]:
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        assert response.status == 200, await response.text()
        results = (await response.json())["results"]
    return [score for _, score in sorted((r["index"], r["relevance_score"]) for r in results)]


async def test_concurrent_requests_share_backend_calls_without_cross_talk(
    start_sidecar: SidecarFactory, vllm_settings: Settings, http: aiohttp.ClientSession
) -> None:
    alone_url = await start_sidecar(vllm_settings, max_wait_ms=0)
    alone = [await scores_in_input_order(http, alone_url, request_body(i)) for i in range(12)]

    url = await start_sidecar(vllm_settings, max_wait_ms=20, max_inflight_batches=1)
    together = await asyncio.gather(
        *(scores_in_input_order(http, url, request_body(i)) for i in range(12))
    )
    for got, expected in zip(together, alone, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)
    metrics = await read_metrics(http, url)
    assert metrics["rerank_backend_calls_total"] < 12
    assert metrics["rerank_batch_pairs_sum"] == 12 * 8


async def test_identical_pairs_from_concurrent_requests_are_scored_once(
    start_sidecar: SidecarFactory, vllm_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(vllm_settings, max_wait_ms=50)
    body = {"query": "same query", "documents": ["alpha", "beta", "gamma"]}
    results = await asyncio.gather(*(scores_in_input_order(http, url, body) for _ in range(5)))
    assert all(r == results[0] for r in results)
    metrics = await read_metrics(http, url)
    assert metrics["rerank_pairs_total"] == 15
    assert metrics["rerank_batch_pairs_sum"] == 3
    # A copy that arrives after the first was scored is a cache hit; one before it, a dedupe.
    answered_by_others = (
        metrics["rerank_deduplicated_pairs_total"]
        + metrics['rerank_score_cache_hits_total{tier="memory"}']
    )
    assert answered_by_others == 12


async def test_pairs_of_a_client_that_hung_up_are_never_sent(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    vllm_server: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings, max_wait_ms=0, max_inflight_batches=1)
    with vllm_server.paused():
        first = asyncio.create_task(scores_in_input_order(http, url, request_body(1)))
        await wait_for_metric(http, url, "rerank_inflight_batches", 1)
        async with aiohttp.ClientSession() as leaving_client:
            leaving = asyncio.create_task(
                leaving_client.post(f"{url}/v1/rerank", json=request_body(2))
            )
            await wait_for_metric(http, url, "rerank_queue_pairs", 8)
            leaving.cancel()
        await wait_for_metric(http, url, "rerank_dropped_pairs_total", 8)
    assert len(await first) == 8
    metrics = await read_metrics(http, url)
    assert metrics["rerank_queue_pairs"] == 0
    assert metrics["rerank_batch_pairs_sum"] == 8


async def test_stalled_backend_gives_503_at_the_deadline_not_a_hang(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    vllm_server: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings, request_timeout_s=1.5)
    with vllm_server.paused():
        started = time.monotonic()
        async with http.post(f"{url}/v1/rerank", json=request_body(3)) as response:
            body = await response.json()
        elapsed = time.monotonic() - started
    assert response.status == 503
    assert body["error"]["type"] == "timeout"
    # A deadline overrun is not a throttle: ML Commons must not retry it into more load.
    assert "x-amzn-ErrorType" not in response.headers
    assert elapsed < 10


async def wait_for_metric(http: aiohttp.ClientSession, url: str, name: str, value: float) -> None:
    async with asyncio.timeout(20):
        # Polling: the sidecar is another server; its metrics are what there is to wait on.
        while (await read_metrics(http, url)).get(name) != value:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
