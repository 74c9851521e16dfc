"""Per-stage timing: the Server-Timing header and the stage histograms, over real HTTP."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory, read_metrics

BODY = {"query": "backpack", "documents": ["a hiking backpack", "a kettle", "a tent"]}
ENTRY = re.compile(r"^(\w+);dur=(\d+\.\d{3})$")


@pytest.fixture
def null_settings(tiny_model_dir: Path) -> Settings:
    return Settings(backend="null", model=str(tiny_model_dir))


def stages(header: str) -> dict[str, float]:
    parsed = {}
    for entry in header.split(", "):
        match = ENTRY.match(entry)
        assert match, f"not a Server-Timing entry: {entry!r}"
        parsed[match[1]] = float(match[2])
    return parsed


async def test_server_timing_names_every_stage_a_request_went_through(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    async with http.post(f"{url}/v1/rerank", json=BODY) as response:
        assert response.status == 200
        scored = stages(response.headers["Server-Timing"])
    assert list(scored) == ["admission", "cache", "tokenize", "queue", "backend", "total"]
    assert scored["total"] >= max(scored["admission"], scored["tokenize"], scored["backend"])

    # The same pairs again come from the score cache: no tokenize, queue or backend stage.
    async with http.post(f"{url}/v1/rerank", json=BODY) as response:
        assert list(stages(response.headers["Server-Timing"])) == ["admission", "cache", "total"]

    metrics = await read_metrics(http, url)
    assert metrics['rerank_stage_seconds_count{stage="total"}'] == 2
    assert metrics['rerank_stage_seconds_count{stage="tokenize"}'] == 1
    assert metrics['rerank_stage_seconds_count{stage="backend"}'] == 1


async def test_errors_are_timed_too_and_other_paths_are_not(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    async with http.post(f"{url}/v1/rerank", json={"query": "x"}) as response:
        assert response.status == 422
        assert list(stages(response.headers["Server-Timing"])) == ["total"]
    async with http.get(f"{url}/healthz") as response:
        assert "Server-Timing" not in response.headers


async def test_the_header_can_be_turned_off(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, server_timing=False)
    async with http.post(f"{url}/v1/rerank", json=BODY) as response:
        assert response.status == 200
        assert "Server-Timing" not in response.headers
    # The histograms are kept either way.
    metrics = await read_metrics(http, url)
    assert metrics['rerank_stage_seconds_count{stage="total"}'] == 1
