"""The score cache: in process and in a real redis-server, through real sidecars on loopback.

The sidecars run the null backend (real tokenizer, batcher and HTTP; scores without a model), so
`rerank_backend_calls` tells whether a pair reached the batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from sidecar.config import Settings
from sidecar.errors import DeadlineExceeded
from sidecar.lru import BoundedLRU
from sidecar.metrics import Metrics
from sidecar.score_cache import ScoreCache, ScoredPair
from tests.conftest import SidecarFactory, read_metrics
from tests.support.redis_server import RedisServer, redis_server, start_redis

# A deadline no test reaches (time.monotonic() seconds).
FAR = float("inf")
DOCS = [f"product {i}: a waterproof hiking backpack, model {i}" for i in range(20)]


@pytest.fixture
def null_settings(tiny_model_dir: Path) -> Settings:
    return Settings(backend="null", model=str(tiny_model_dir))


@pytest.fixture
def redis_instance(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


async def rerank(http: aiohttp.ClientSession, url: str, **body: Any) -> dict[str, Any]:
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


def scores_by_index(result: dict[str, Any]) -> dict[int, float]:
    return {item["index"]: item["relevance_score"] for item in result["results"]}


async def test_a_cached_pair_never_reaches_the_batcher(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    first = await rerank(http, url, query="backpack", documents=DOCS)
    calls = (await read_metrics(http, url))["rerank_backend_calls_total"]
    second = await rerank(http, url, query="backpack", documents=DOCS)
    metrics = await read_metrics(http, url)
    assert metrics["rerank_backend_calls_total"] == calls
    assert metrics['rerank_score_cache_hits_total{tier="memory"}'] == len(DOCS)
    assert metrics["rerank_score_cache_misses_total"] == len(DOCS)
    assert scores_by_index(second) == scores_by_index(first)
    # Tokens and truncation are reported from the cache as when the pairs were scored.
    assert second["meta"]["billed_units"] == first["meta"]["billed_units"]


async def test_a_mixed_request_scores_only_its_new_documents(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    await rerank(http, url, query="backpack", documents=DOCS[:10])
    pairs_before = (await read_metrics(http, url))["rerank_batch_pairs_sum"]
    mixed = await rerank(http, url, query="backpack", documents=DOCS[5:15])
    metrics = await read_metrics(http, url)
    assert metrics["rerank_batch_pairs_sum"] - pairs_before == 5
    assert sorted(scores_by_index(mixed)) == list(range(10))


@pytest.mark.parametrize(
    "change",
    [
        {"query": "tent"},
        {"instruction": "Find products for a winter trip"},
        {"max_tokens_per_doc": 3},
    ],
)
async def test_the_key_covers_query_instruction_and_token_limit(
    start_sidecar: SidecarFactory,
    null_settings: Settings,
    http: aiohttp.ClientSession,
    change: dict[str, Any],
) -> None:
    url = await start_sidecar(null_settings)
    await rerank(http, url, query="backpack", documents=DOCS[:4])
    await rerank(http, url, **{"query": "backpack", "documents": DOCS[:4], **change})
    metrics = await read_metrics(http, url)
    assert metrics['rerank_score_cache_hits_total{tier="memory"}'] == 0
    assert metrics["rerank_score_cache_misses_total"] == 8


async def test_off_when_the_size_is_zero(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, score_cache_bytes=0)
    await rerank(http, url, query="backpack", documents=DOCS[:4])
    calls = (await read_metrics(http, url))["rerank_backend_calls_total"]
    await rerank(http, url, query="backpack", documents=DOCS[:4])
    metrics = await read_metrics(http, url)
    assert metrics["rerank_backend_calls_total"] == calls + 1
    assert metrics["rerank_score_cache_misses_total"] == 0


async def test_the_byte_bound_evicts_the_least_recent(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, score_cache_bytes=4096)
    await rerank(http, url, query="backpack", documents=DOCS)
    metrics = await read_metrics(http, url)
    evicted = metrics["rerank_score_cache_evictions_total"]
    assert 0 < evicted < len(DOCS)
    # The most recent scores are still there, the first ones are gone.
    await rerank(http, url, query="backpack", documents=DOCS[-1:])
    await rerank(http, url, query="backpack", documents=DOCS[:1])
    metrics = await read_metrics(http, url)
    assert metrics['rerank_score_cache_hits_total{tier="memory"}'] == 1
    assert metrics["rerank_score_cache_misses_total"] == len(DOCS) + 1


class GatedScorer:
    """`score_missing` for ScoreCache.score that holds its answer until released."""

    def __init__(self, *, fail: bool = False) -> None:
        self.asked: list[list[int]] = []
        self.called = asyncio.Event()
        self.release = asyncio.Event()
        self._fail = fail

    async def __call__(self, indices: list[int]) -> list[ScoredPair]:
        self.asked.append(indices)
        self.called.set()
        await self.release.wait()
        if self._fail:
            raise TimeoutError("the backend gave up")
        return [ScoredPair(float(i), 10 + i, False) for i in indices]


async def test_a_pair_another_request_is_scoring_is_awaited_not_scored_again() -> None:
    metrics = Metrics()
    cache = ScoreCache(metrics=metrics, max_bytes=1 << 20, ttl_s=60)
    keys = ScoreCache.keys("m", "i", "backpack", "None/1", DOCS[:4])
    first_scorer, second_scorer = GatedScorer(), GatedScorer()
    first = asyncio.create_task(cache.score(keys[:3], first_scorer, deadline=FAR))
    await first_scorer.called.wait()
    # Its first two documents are being scored for `first`; the last is new, twice.
    second = asyncio.create_task(
        cache.score([keys[1], keys[2], keys[3], keys[3]], second_scorer, deadline=FAR)
    )
    await second_scorer.called.wait()
    assert second_scorer.asked == [[2]]
    first_scorer.release.set()
    second_scorer.release.set()
    assert [pair.score for pair in await first] == [0.0, 1.0, 2.0]
    assert [pair.score for pair in await second] == [1.0, 2.0, 2.0, 2.0]
    assert metrics.deduplicated_pairs._value.get() == 2


async def test_waiters_score_a_pair_themselves_when_its_request_fails() -> None:
    cache = ScoreCache(metrics=Metrics(), max_bytes=1 << 20, ttl_s=60)
    keys = ScoreCache.keys("m", "i", "backpack", "None/1", DOCS[:2])
    failing, waiting = GatedScorer(fail=True), GatedScorer()
    first = asyncio.create_task(cache.score(keys, failing, deadline=FAR))
    await failing.called.wait()
    second = asyncio.create_task(cache.score(keys, waiting, deadline=FAR))
    waiting.release.set()
    failing.release.set()
    with pytest.raises(TimeoutError):
        await first
    assert [pair.score for pair in await second] == [0.0, 1.0]
    assert waiting.asked == [[0, 1]]
    # Nothing is left marked as being scored: a third request is answered from the cache.
    third = GatedScorer()
    assert [pair.score for pair in await cache.score(keys, third, deadline=FAR)] == [0.0, 1.0]
    assert third.asked == []


async def test_a_waiter_leaves_at_its_own_deadline() -> None:
    cache = ScoreCache(metrics=Metrics(), max_bytes=1 << 20, ttl_s=60)
    keys = ScoreCache.keys("m", "i", "backpack", "None/1", DOCS[:2])
    slow, waiting = GatedScorer(), GatedScorer()
    first = asyncio.create_task(cache.score(keys, slow, deadline=FAR))
    await slow.called.wait()
    # Its deadline has passed: it answers at once instead of waiting on `first`'s backend.
    with pytest.raises(DeadlineExceeded):
        await cache.score(keys, waiting, deadline=time.monotonic())
    assert waiting.asked == []
    assert not first.done()
    slow.release.set()
    assert [pair.score for pair in await first] == [0.0, 1.0]


def test_lru_expiry_and_byte_bound() -> None:
    evictions: list[None] = []
    lru: BoundedLRU[str, int] = BoundedLRU(100, ttl_s=60, on_evict=lambda: evictions.append(None))
    lru.put("a", 1, 40, now=0.0)
    lru.put("b", 2, 40, now=10.0)
    assert lru.get("a", now=59.0) == 1  # also makes "a" the most recent
    lru.put("c", 3, 40, now=20.0)
    assert (lru.get("b", now=21.0), len(evictions)) == (None, 1)
    assert lru.get("a", now=60.0) is None  # expired at 0 + 60
    assert lru.get("c", now=79.0) == 3
    assert lru.bytes == 40
    lru.put("huge", 4, 101, now=0.0)
    assert lru.get("huge", now=0.0) is None


async def wait_for_redis_keys(server: RedisServer, count: int, timeout_s: float = 10) -> None:
    """Writes to Redis happen after the answer: poll until they have landed."""
    client = redis.Redis(port=server.port)
    deadline = time.monotonic() + timeout_s
    while client.dbsize() < count:
        assert time.monotonic() < deadline, f"Redis holds {client.dbsize()} keys, not {count}"
        await asyncio.sleep(0.01)


async def test_replicas_share_scores_through_redis(
    start_sidecar: SidecarFactory,
    null_settings: Settings,
    http: aiohttp.ClientSession,
    redis_instance: RedisServer,
) -> None:
    shared = {"cache_url": redis_instance.url, "cache_key_prefix": "test:"}
    first_replica = await start_sidecar(null_settings, **shared)
    second_replica = await start_sidecar(null_settings, **shared)
    first = await rerank(http, first_replica, query="backpack", documents=DOCS)
    await wait_for_redis_keys(redis_instance, len(DOCS))
    keys = redis.Redis(port=redis_instance.port).keys("*")
    assert all(key.startswith(b"test:") for key in keys)
    ttl = redis.Redis(port=redis_instance.port).ttl(keys[0])
    assert 3500 < ttl <= 3600

    second = await rerank(http, second_replica, query="backpack", documents=DOCS)
    metrics = await read_metrics(http, second_replica)
    assert metrics['rerank_score_cache_hits_total{tier="redis"}'] == len(DOCS)
    assert metrics.get("rerank_backend_calls_total", 0) == 0
    assert scores_by_index(second) == scores_by_index(first)


async def test_redis_killed_mid_test_degrades_to_in_process(
    start_sidecar: SidecarFactory,
    null_settings: Settings,
    http: aiohttp.ClientSession,
    redis_instance: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = await start_sidecar(null_settings, cache_url=redis_instance.url)
    await rerank(http, url, query="backpack", documents=DOCS[:5])
    await wait_for_redis_keys(redis_instance, 5)
    redis_instance.kill()
    with caplog.at_level(logging.WARNING, logger="sidecar.score_cache"):
        for query in ("tent", "kettle", "lamp"):
            result = await rerank(http, url, query=query, documents=DOCS[:5])
            assert len(result["results"]) == 5
        # In-process hits still answer.
        await rerank(http, url, query="backpack", documents=DOCS[:5])
    metrics = await read_metrics(http, url)
    assert metrics["rerank_score_cache_redis_errors_total"] >= 1
    assert metrics['rerank_score_cache_hits_total{tier="memory"}'] == 5
    failures = [r for r in caplog.records if "Redis failed" in r.getMessage()]
    assert len(failures) == 1, "logged once, not once per request"


async def test_a_paused_redis_costs_at_most_the_timeout(
    start_sidecar: SidecarFactory,
    null_settings: Settings,
    http: aiohttp.ClientSession,
    redis_instance: RedisServer,
) -> None:
    url = await start_sidecar(null_settings, cache_url=redis_instance.url, cache_timeout_ms=100)
    await rerank(http, url, query="warm-up", documents=DOCS[:2])
    with redis_instance.paused():
        result = await rerank(http, url, query="backpack", documents=DOCS[:5])
    assert len(result["results"]) == 5
    metrics = await read_metrics(http, url)
    assert metrics["rerank_score_cache_redis_errors_total"] >= 1


async def test_redis_is_used_again_once_it_is_back(tmp_path: Path) -> None:
    server = start_redis(tmp_path)
    cache = ScoreCache(
        metrics=Metrics(),
        max_bytes=0,
        ttl_s=60,
        redis_url=server.url,
        redis_timeout_s=0.5,
        redis_retry_s=0.0,
    )
    keys = ScoreCache.keys("m", "i", "q", "None/1", ["a", "b"])
    try:
        server.kill()
        assert await cache.get_many(keys) == [None, None]
        server = start_redis(tmp_path, port=server.port)
        cache.put_many(keys, [ScoredPair(0.25, 10, False), ScoredPair(0.75, 12, True)])
        await cache.close()  # waits for the background write
        cache = ScoreCache(
            metrics=Metrics(), max_bytes=0, ttl_s=60, redis_url=server.url, redis_timeout_s=0.5
        )
        assert await cache.get_many(keys) == [
            ScoredPair(0.25, 10, False),
            ScoredPair(0.75, 12, True),
        ]
    finally:
        await cache.close()
        server.process.terminate()
        server.process.wait(timeout=10)
