"""The score cache: (model, instruction, query, document, token limit) -> score.

Two tiers. In process, an LRU cache bounded in bytes, with a TTL (sidecar/lru.py). Optionally
Redis, shared by all replicas, with the same TTL and a key prefix. Redis is an accelerator, never a
dependency: every Redis call is bounded by a timeout, and a Redis that is down or slow makes the
cache in-process only for a while (logged once, counted), never a failed or slowed request.
Writes to Redis happen after the answer, in the background.

A pair found in either tier is answered from it and never reaches the tokenizer or the batcher.
A pair missing from both but already being scored for another request (tokenizing, queued, or in a
backend call) is awaited, not scored again: the batcher's own dedupe starts only once a pair is
tokenized, and a hot query's copies arrive while the first is still tokenizing. If the request
scoring it fails or leaves, its waiters score the pair themselves; a waiter waits no longer than
its own request's deadline.
Scores are deterministic for a model and its input, so a cached score is the score the backend
would give; the TTL bounds how long one outlives a model redeployed under the same name.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, TypeVar

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from sidecar.config import Settings
from sidecar.errors import DeadlineExceeded
from sidecar.lru import BoundedLRU
from sidecar.metrics import Metrics
from sidecar.timing import timed

log = logging.getLogger(__name__)

T = TypeVar("T")

_PACKED = struct.Struct("<dI?")  # score, tokens of the formatted pair, truncated
# An entry's own objects (16-byte key, packed value, the LRU's tuple, its float and int) and its
# OrderedDict link.
_ENTRY_BYTES = sys.getsizeof(b"\0" * 16) + sys.getsizeof(b"\0" * _PACKED.size) + 64 + 32 + 28 + 100


class ScoredPair(NamedTuple):
    """What is kept of a scored pair: the score, and what the response reports about the pair."""

    score: float
    n_tokens: int
    truncated: bool


class _Scoring:
    """The pairs one request is scoring: done when it has their scores, or gave up."""

    __slots__ = ("done", "values")

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.values: dict[bytes, ScoredPair] = {}


class ScoreCache:
    def __init__(
        self,
        *,
        metrics: Metrics,
        max_bytes: int,
        ttl_s: float,
        redis_url: str | None = None,
        key_prefix: str = "rerank:",
        redis_timeout_s: float = 0.05,
        redis_retry_s: float = 5.0,
    ) -> None:
        self._metrics = metrics
        self._ttl_s = ttl_s
        # Values packed as in Redis: bytes are invisible to the garbage collector, a NamedTuple is
        # not, and with 250,000 of them each full collection walked them all (in process, a
        # catalog request cost ~1.0 ms with them, ~0.8 ms without).
        self._memory: BoundedLRU[bytes, bytes] | None = (
            BoundedLRU(max_bytes, ttl_s=ttl_s, on_evict=metrics.score_cache_evictions.inc)
            if max_bytes >= _ENTRY_BYTES
            else None
        )
        self._prefix = key_prefix.encode()
        self._redis_timeout_s = redis_timeout_s
        self._redis_retry_s = redis_retry_s
        self._redis = (
            aioredis.Redis.from_url(
                redis_url,
                socket_timeout=redis_timeout_s,
                socket_connect_timeout=redis_timeout_s,
                retry_on_timeout=False,
            )
            if redis_url
            else None
        )
        self._redis_down_until = 0.0
        self._redis_failing = False
        self._writes: set[asyncio.Task[None]] = set()
        # Pairs being scored for some request, from the cache miss until the put.
        self._scoring: dict[bytes, _Scoring] = {}

    @property
    def enabled(self) -> bool:
        return self._memory is not None or self._redis is not None

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=self._redis_timeout_s * 2)
        if self._redis is not None:
            await self._redis.aclose()

    @staticmethod
    def keys(
        model: str, instruction: str, query: str, limits: str, documents: Sequence[str]
    ) -> list[bytes]:
        """One 16-byte key per document; the request's part is hashed once."""
        head = hashlib.blake2b(digest_size=16)
        for part in (model, instruction, query, limits):
            encoded = part.encode()
            head.update(len(encoded).to_bytes(8, "little") + encoded)
        keys = []
        for document in documents:
            hasher = head.copy()
            hasher.update(document.encode())
            keys.append(hasher.digest())
        return keys

    async def get_many(self, keys: Sequence[bytes]) -> list[ScoredPair | None]:
        with timed("cache"):
            return await self._get_many(keys)

    async def _get_many(self, keys: Sequence[bytes]) -> list[ScoredPair | None]:
        now = time.monotonic()
        found: list[ScoredPair | None] = [None] * len(keys)
        if self._memory is not None:
            get = self._memory.get
            for i, key in enumerate(keys):
                packed = get(key, now)
                if packed is not None:
                    found[i] = ScoredPair(*_PACKED.unpack(packed))
        memory_hits = sum(value is not None for value in found)
        redis_hits = 0
        missing = [i for i, value in enumerate(found) if value is None]
        if missing and self._redis_usable():
            values = await self._redis_call(self._mget([keys[i] for i in missing]))
            for i, raw in zip(missing, values or (), strict=False):
                if raw is not None and len(raw) == _PACKED.size:
                    found[i] = ScoredPair(*_PACKED.unpack(raw))
                    redis_hits += 1
                    if self._memory is not None:
                        self._memory.put(keys[i], raw, _ENTRY_BYTES, now)
        self._metrics.score_cache_hits.labels("memory").inc(memory_hits)
        self._metrics.score_cache_hits.labels("redis").inc(redis_hits)
        self._metrics.score_cache_misses.inc(len(keys) - memory_hits - redis_hits)
        return found

    def put_many(self, keys: Sequence[bytes], values: Sequence[ScoredPair]) -> None:
        # Packed once for both tiers.
        packed = [_PACKED.pack(*value) for value in values]
        if self._memory is not None:
            now = time.monotonic()
            for key, raw in zip(keys, packed, strict=True):
                self._memory.put(key, raw, _ENTRY_BYTES, now)
        if keys and self._redis_usable():
            task = asyncio.create_task(self._store(list(keys), packed))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def score(
        self,
        keys: Sequence[bytes],
        score_missing: Callable[[list[int]], Awaitable[list[ScoredPair]]],
        *,
        deadline: float,
    ) -> list[ScoredPair]:
        """Each key's cached score; the others from `score_missing(indices)`, then cached.
        Waiting on another request's scoring ends at `deadline` (time.monotonic())."""
        found = await self.get_many(keys)
        owned: dict[bytes, list[int]] = {}
        awaited: dict[bytes, list[int]] = {}
        # Taken now: another request's entry leaves `_scoring` once its scores are in.
        joined: dict[bytes, _Scoring] = {}
        for i, key in enumerate(keys):
            if found[i] is not None:
                continue
            if key in owned or key in awaited:
                (owned if key in owned else awaited)[key].append(i)
            elif key in self._scoring:
                awaited[key] = [i]
                joined[key] = self._scoring[key]
            else:
                owned[key] = [i]
        if joined:
            self._metrics.deduplicated_pairs.inc(len(joined))
        if owned:
            # One entry for all of this request's pairs: a future per pair cost more than a miss.
            mine = _Scoring()
            for key in owned:
                self._scoring[key] = mine
            try:
                mine.values.update(await self._score_into(found, owned, score_missing))
            finally:
                for key in owned:
                    del self._scoring[key]
                # Waiters read `values`; a key missing there (this request failed) they score.
                mine.done.set_result(None)
        if joined:
            await self._join(joined, awaited, found, score_missing, deadline)
        return [value for value in found if value is not None]

    async def _join(
        self,
        joined: dict[bytes, _Scoring],
        awaited: dict[bytes, list[int]],
        found: list[ScoredPair | None],
        score_missing: Callable[[list[int]], Awaitable[list[ScoredPair]]],
        deadline: float,
    ) -> None:
        """Fill `found` from other requests' scoring; score what they gave up on."""
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                await asyncio.wait({scoring.done for scoring in joined.values()})
        except TimeoutError:
            raise DeadlineExceeded(
                "another request scoring the same documents did not finish in time"
            ) from None
        orphaned: dict[bytes, list[int]] = {}
        for key, scoring in joined.items():
            value = scoring.values.get(key)
            if value is None:
                orphaned[key] = awaited[key]
            else:
                for i in awaited[key]:
                    found[i] = value
        if orphaned:
            await self._score_into(found, orphaned, score_missing)

    async def _score_into(
        self,
        found: list[ScoredPair | None],
        indices_by_key: dict[bytes, list[int]],
        score_missing: Callable[[list[int]], Awaitable[list[ScoredPair]]],
    ) -> dict[bytes, ScoredPair]:
        """Score each key once (at its first index), cache it, and fill all its indices."""
        fresh = await score_missing([indices[0] for indices in indices_by_key.values()])
        self.put_many(list(indices_by_key), fresh)
        for indices, value in zip(indices_by_key.values(), fresh, strict=True):
            for i in indices:
                found[i] = value
        return dict(zip(indices_by_key, fresh, strict=True))

    def _redis_usable(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._redis_down_until

    async def _mget(self, keys: list[bytes]) -> list[bytes | None]:
        assert self._redis is not None
        values = await self._redis.mget([self._prefix + key for key in keys])
        return [value if isinstance(value, bytes) else None for value in values]

    async def _store(self, keys: list[bytes], packed: list[bytes]) -> None:
        assert self._redis is not None
        ttl_ms = max(1, int(self._ttl_s * 1000))
        pipe = self._redis.pipeline(transaction=False)
        for key, raw in zip(keys, packed, strict=True):
            pipe.set(self._prefix + key, raw, px=ttl_ms)
        await self._redis_call(pipe.execute())

    async def _redis_call(self, call: Awaitable[T]) -> T | None:
        """The call's result, or None when Redis failed or was too slow (then skipped a while)."""
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                result = await call
        except (RedisError, OSError, TimeoutError) as exc:
            self._metrics.score_cache_redis_errors.inc()
            if not self._redis_failing:
                self._redis_failing = True
                log.warning(
                    "score cache: Redis failed (%s: %s); in-process only, retrying every %.0f s",
                    type(exc).__name__,
                    exc,
                    self._redis_retry_s,
                )
            self._redis_down_until = time.monotonic() + self._redis_retry_s
            return None
        if self._redis_failing:
            self._redis_failing = False
            log.warning("score cache: Redis answers again")
        return result


def build_score_cache(settings: Settings, metrics: Metrics) -> ScoreCache | None:
    """The score cache the settings ask for, or None when both tiers are off."""
    cache = ScoreCache(
        metrics=metrics,
        max_bytes=settings.score_cache_bytes,
        ttl_s=settings.cache_ttl_s,
        redis_url=settings.cache_url,
        key_prefix=settings.cache_key_prefix,
        redis_timeout_s=settings.cache_timeout_ms / 1000,
    )
    return cache if cache.enabled else None
