"""A batch loop that fails, over real HTTP: waiting requests fail at once (not at their deadline),
/readyz is 503 until the loop runs again, and then requests are served again.

The failure is injected (the loop has no known bug to trigger): `Batcher._cut_batch` raises while
`broken` is set.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from sidecar.batcher import Batcher
from sidecar.config import Settings
from tests.conftest import SidecarFactory, read_metrics


async def test_a_crashed_batch_loop_fails_fast_turns_readyz_503_and_restarts(
    start_sidecar: SidecarFactory,
    tiny_model_dir: Path,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = asyncio.Event()
    cut_batch = Batcher._cut_batch

    def failing_cut_batch(self: Batcher) -> object:
        if broken.is_set():
            raise RuntimeError("injected batch loop failure")
        return cut_batch(self)

    monkeypatch.setattr(Batcher, "_cut_batch", failing_cut_batch)
    url = await start_sidecar(
        Settings(backend="null", model=str(tiny_model_dir), request_timeout_s=120)
    )
    body = {"query": "q", "documents": ["a", "b"]}
    broken.set()
    async with asyncio.timeout(60), http.post(f"{url}/v1/rerank", json=body) as r:
        # Long before the 120 s deadline, and not a `timeout`.
        assert r.status == 503
        error = (await r.json())["error"]
        assert error["type"] == "backend_unavailable" and "batch loop" in error["message"]
    async with http.get(f"{url}/readyz") as r:
        assert r.status == 503 and "batch loop" in (await r.json())["reason"]
    assert (await read_metrics(http, url))["rerank_batch_loop_restarts_total"] >= 1
    broken.clear()
    deadline = time.monotonic() + 30
    while True:
        async with http.get(f"{url}/readyz") as r:
            if r.status == 200:
                break
        assert time.monotonic() < deadline, "the batch loop did not come back"
        await asyncio.sleep(0.05)
    async with http.post(f"{url}/v1/rerank", json=body) as r:
        assert r.status == 200, await r.text()
