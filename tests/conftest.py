"""Session fixtures: the tiny Qwen3 model, one real vLLM CPU server, sidecars on loopback."""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config import Settings
from sidecar.server import create_app, make_runner
from tests.support.servers import (
    TINY_SERVED_NAME,
    ServerProcess,
    sidecar_process,
    vllm_cpu_server,
)
from tests.support.tiny_qwen import build_tiny_qwen3

SidecarFactory = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen3(tmp_path_factory.mktemp("models") / "tiny-qwen3")


@pytest.fixture(scope="session")
def vllm_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    with vllm_cpu_server(tiny_model_dir, tmp_path_factory.mktemp("logs") / "vllm.log") as server:
        yield server


@pytest.fixture(scope="session")
def vllm_settings(vllm_server: ServerProcess, tiny_model_dir: Path) -> Settings:
    return Settings(
        vllm_url=vllm_server.url, model=str(tiny_model_dir), served_model_name=TINY_SERVED_NAME
    )


class SidecarTestServer(TestServer):
    """The application on loopback, served by the runner `rerank-sidecar serve` uses."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings), host="127.0.0.1")
        self.settings = settings

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return make_runner(self.app, self.settings)


@pytest_asyncio.fixture
async def start_sidecar() -> AsyncIterator[SidecarFactory]:
    """Start sidecars (real aiohttp servers on 127.0.0.1) with the given settings."""
    servers: list[TestServer] = []

    async def start(settings: Settings, **overrides: Any) -> str:
        server = SidecarTestServer(settings.model_copy(update=overrides))
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


@pytest_asyncio.fixture(scope="session")
async def embedded_sidecar() -> AsyncIterator[str]:
    """One sidecar on the embedded CPU model (all-MiniLM-L6-v2) for the whole session."""
    server = SidecarTestServer(Settings())
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture(scope="session")
def embedded_sidecar_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The embedded CPU model in a `python -m sidecar serve` process of its own, for sync tests
    (a browser, the OpenSearch node) during which the session's event loop does not run."""
    log = tmp_path_factory.mktemp("logs") / "embedded-sidecar.log"
    with sidecar_process(log, "--backend", "embedded") as sidecar:
        yield sidecar


async def read_metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """The sidecar's /metrics as {sample name with labels: value}."""
    async with http.get(f"{url}/metrics") as response:
        return parse_metrics(await response.text())


def read_metrics_sync(url: str) -> dict[str, float]:
    """`read_metrics` for tests without an event loop (the real-node suite)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return parse_metrics(response.read().decode())


def parse_metrics(text: str) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
