"""A closed-loop load generator: C clients, each sending its next request when the last returns."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_s: list[float]
    pairs_per_request: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def pairs_per_s(self) -> float:
        return self.requests * self.pairs_per_request / self.seconds

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies_s)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(0.99)


async def run_load(
    url: str, bodies: Sequence[dict[str, Any]], *, concurrency: int, total: int
) -> LoadResult:
    payloads = [orjson.dumps(body) for body in bodies]
    latencies: list[float] = []
    errors = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal next_index, errors
            while next_index < total:
                payload = payloads[next_index % len(payloads)]
                next_index += 1
                started = time.perf_counter()
                async with session.post(
                    url, data=payload, headers={"Content-Type": "application/json"}
                ) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        # Warm up connections and caches outside the measurement.
        await asyncio.gather(*(client_once(session, url, payloads[0]) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    pairs = len(bodies[0].get("documents", []))
    return LoadResult(len(latencies), errors, seconds, latencies, pairs)


async def client_once(session: aiohttp.ClientSession, url: str, payload: bytes) -> None:
    async with session.post(url, data=payload, headers={"Content-Type": "application/json"}) as r:
        await r.read()
