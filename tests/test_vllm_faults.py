"""vLLM faults against a real vLLM CPU server of this module's own (stalled with SIGSTOP, killed
with SIGKILL), so the session's shared server is never hurt: retry of calls vLLM never took,
admission before tokenizing, deadlines passed to vLLM, degrading to the embedded bi-encoder and
back, and the SIGTERM drain of a real `rerank-sidecar serve` process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.config import Settings
from tests.conftest import SidecarFactory, read_metrics
from tests.support.servers import (
    TINY_SERVED_NAME,
    ServerProcess,
    free_port,
    server_process,
    vllm_cpu_server,
)

pytestmark = pytest.mark.vllm

# Guards against hangs, not speed goals.
HANG = 60
DEGRADED_HEADER = "X-Rerank-Degraded"


@pytest.fixture(scope="module")
def own_vllm(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("faults") / "vllm.log"
    with vllm_cpu_server(tiny_model_dir, log) as server:
        yield server


@pytest.fixture(scope="module")
def own_settings(own_vllm: ServerProcess, tiny_model_dir: Path) -> Settings:
    return Settings(
        vllm_url=own_vllm.url, model=str(tiny_model_dir), served_model_name=TINY_SERVED_NAME
    )


async def until(condition: Any, *, within: float = HANG, what: str = "condition") -> Any:
    """Poll an async condition until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if result := await condition():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within} s")


async def metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    return (await read_metrics(http, url)).get(name, 0.0)


async def rerank(
    http: aiohttp.ClientSession, url: str, documents: list[str], query: str = "what is x?"
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with http.post(f"{url}/v1/rerank", json={"query": query, "documents": documents}) as r:
        return r.status, await r.json(), r.headers


async def test_calls_vllm_dropped_during_a_stall_are_retried_not_failed(
    start_sidecar: SidecarFactory,
    own_settings: Settings,
    own_vllm: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    # One pair per call and many calls at once: each stalled call sits on its own kept-alive
    # connection, which vLLM's server drops on resuming (its keep-alive timeout passed).
    url = await start_sidecar(
        own_settings, max_batch_pairs=1, max_inflight_batches=16, health_check_interval_s=30
    )
    warm = await asyncio.gather(*(rerank(http, url, [f"warm {i}"]) for i in range(16)))
    assert all(status == 200 for status, _, _ in warm)
    with own_vllm.paused():
        stalled = [asyncio.create_task(rerank(http, url, [f"stalled {i}"])) for i in range(12)]
        await until(
            lambda: _at_least(http, url, "rerank_inflight_batches", 12), what="12 calls in flight"
        )
        # Longer than uvicorn's 5 s keep-alive timeout: the scenario, not synchronisation.
        await asyncio.sleep(7)
    async with asyncio.timeout(HANG):
        results = await asyncio.gather(*stalled)
    assert [status for status, _, _ in results] == [200] * 12, results


async def _at_least(http: aiohttp.ClientSession, url: str, name: str, value: float) -> bool:
    return await metric(http, url, name) >= value


async def test_admission_refuses_before_tokenizing_and_deadlines_reach_vllm(
    start_sidecar: SidecarFactory,
    own_settings: Settings,
    own_vllm: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(
        own_settings,
        max_documents=4,
        max_queue_pairs=5,
        max_concurrent_requests=2,
        max_inflight_batches=1,
        request_timeout_s=3,
        health_check_interval_s=30,
    )
    with own_vllm.paused():
        first = asyncio.create_task(rerank(http, url, ["a", "b", "c", "d"]))
        await until(lambda: _at_least(http, url, "rerank_inflight_batches", 1), what="in flight")
        assert await metric(http, url, "rerank_pairs_total") == 4
        # 4 + 2 > 5 pairs: refused before its documents are tokenized.
        status, body, headers = await rerank(http, url, ["e", "f"])
        assert status == 429 and "queue full" in body["error"]["message"], body
        assert int(headers["Retry-After"]) >= 1
        assert await metric(http, url, "rerank_pairs_total") == 4
        # 4 + 1 fits; a third request at once does not.
        second = asyncio.create_task(rerank(http, url, ["g"]))
        await until(lambda: _at_least(http, url, "rerank_pairs_total", 5), what="second in")
        status, body, _ = await rerank(http, url, ["h"])
        assert status == 429 and "too many requests" in body["error"]["message"], body
        # The deadline passes while vLLM is stalled: 503 timeout, which is not a throttle.
        for task in (first, second):
            status, body, headers = await task
            assert status == 503 and body["error"]["type"] == "timeout", body
            assert "x-amzn-ErrorType" not in headers
        # The calls carried the deadline: none is left holding vLLM or a batch slot.
        await until(
            lambda: _is(http, url, "rerank_inflight_batches", 0), within=2, what="calls ended"
        )


async def _is(http: aiohttp.ClientSession, url: str, name: str, value: float) -> bool:
    return await metric(http, url, name) == value


async def test_degrades_to_the_bi_encoder_while_vllm_is_stalled_and_comes_back(
    start_sidecar: SidecarFactory,
    own_settings: Settings,
    own_vllm: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(
        own_settings, fallback="embedded", health_check_interval_s=0.5, health_check_timeout_s=1
    )
    status, body, headers = await rerank(http, url, ["a", "b"])
    assert status == 200 and body["meta"]["model_kind"] == "cross-encoder", body
    assert DEGRADED_HEADER not in headers and "degraded" not in body["meta"]
    with own_vllm.paused():
        stalled_at = time.monotonic()
        # Sent before the health check has noticed: it is rescored, not left to time out.
        status, body, headers = await rerank(http, url, ["in flight when it stalled"])
        assert status == 200, body
        assert body["meta"] == body["meta"] | {"model_kind": "bi-encoder", "degraded": True}
        assert headers[DEGRADED_HEADER] == "backend_unavailable"
        print(f"\nswitch-over to the bi-encoder: {time.monotonic() - stalled_at:.2f} s")
        async with http.get(f"{url}/readyz") as r:
            assert r.status == 200 and (await r.json())["status"] == "degraded"
        assert (
            await metric(http, url, 'rerank_degraded_requests_total{reason="backend_unavailable"}')
            >= 1
        )
    resumed_at = time.monotonic()

    async def cross_encoder_again() -> bool:
        status, body, _ = await rerank(http, url, ["after"])
        assert status == 200, body
        return bool(body["meta"]["model_kind"] == "cross-encoder")

    await until(cross_encoder_again, what="back to the cross-encoder")
    print(f"back to the cross-encoder: {time.monotonic() - resumed_at:.2f} s after resuming")


async def test_sigterm_drains_serving_new_and_in_flight_work_then_exits_0(
    own_settings: Settings,
    own_vllm: ServerProcess,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "sidecar", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--vllm-url", own_vllm.url, "--model", own_settings.model,
        "--served-model-name", TINY_SERVED_NAME,
        "--drain-delay-s", "3", "--shutdown-timeout-s", "30", "--health-check-interval-s", "30",
    ]  # fmt: skip
    with server_process(command, health_url=f"{url}/readyz", log_path=tmp_path / "s.log") as proc:
        with own_vllm.paused():
            in_flight = asyncio.create_task(rerank(http, url, ["in flight at SIGTERM"]))
            await until(lambda: _at_least(http, url, "rerank_inflight_batches", 1), what="sent")
            os.kill(proc.pid, signal.SIGTERM)
            term_at = time.monotonic()

            async def not_ready() -> bool:
                async with http.get(f"{url}/readyz") as r:
                    return r.status == 503 and "shutting down" in (await r.json())["reason"]

            await until(not_ready, within=2, what="/readyz 503 after SIGTERM")
            ready_503_s = time.monotonic() - term_at
            # During the drain delay new work is still taken.
            during_drain = asyncio.create_task(rerank(http, url, ["sent during the drain"]))
            await until(lambda: _at_least(http, url, "rerank_pairs_total", 2), what="taken")
        async with asyncio.timeout(HANG):
            results = await asyncio.gather(in_flight, during_drain)
        assert [status for status, _, _ in results] == [200, 200], results
        exit_code = await asyncio.to_thread(proc.wait, HANG)
        print(
            f"\nSIGTERM: /readyz 503 after {ready_503_s * 1000:.0f} ms, "
            f"exit {exit_code} after {time.monotonic() - term_at:.2f} s (drain delay 3 s), "
            f"in-flight and drain-time requests: {[s for s, _, _ in results]}"
        )
        assert exit_code == 0


async def test_degrades_when_vllm_is_killed(
    start_sidecar: SidecarFactory,
    own_settings: Settings,
    own_vllm: ServerProcess,
    http: aiohttp.ClientSession,
) -> None:
    # Last in the module: the module's vLLM does not come back.
    url = await start_sidecar(own_settings, fallback="embedded", health_check_interval_s=30)
    status, body, _ = await rerank(http, url, ["a"])
    assert status == 200 and body["meta"]["model_kind"] == "cross-encoder"
    os.killpg(own_vllm.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    statuses = []
    for i in range(5):
        status, body, headers = await rerank(http, url, [f"after the kill {i}"])
        statuses.append((status, body["meta"].get("model_kind") if status == 200 else body))
        assert headers.get(DEGRADED_HEADER) in ("backend_failed", "backend_unavailable")
    print(f"\nafter kill -9: 5 requests in {time.monotonic() - killed_at:.2f} s: {statuses}")
    assert statuses == [(200, "bi-encoder")] * 5
