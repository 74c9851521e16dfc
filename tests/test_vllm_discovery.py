"""vLLM replicas found through DNS (`dns+http://`), and pooled connections replaced by age.

Against the session's real vLLM CPU server, which listens on 127.0.0.1 only: an answer that
also names 127.0.0.2 is a second "pod" that refuses connections. The system resolver is used
through `localhost`; answers that change over time come from a table the test edits, passed as
the resolver, because this machine has no DNS server whose records a test could change.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.backends.vllm import PooledSessions, VLLMBackend, VLLMOptions
from sidecar.config import Settings
from sidecar.errors import BackendUnavailable
from tests.conftest import SidecarFactory
from tests.support.servers import TINY_SERVED_NAME, ServerProcess

pytestmark = pytest.mark.vllm

HANG = 60


async def until(condition: Callable[[], Any], what: str) -> None:
    """Poll a condition the backend's own loops will make true (no fixed sleeps)."""
    deadline = time.monotonic() + HANG
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {HANG} s")
        await asyncio.sleep(0.02)


class Answers:
    """A resolver whose answer the test changes; an empty answer fails like NXDOMAIN."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.asked = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked += 1
        if not self.addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.addresses)


def options(**overrides: Any) -> VLLMOptions:
    base: dict[str, Any] = {
        "model_name": TINY_SERVED_NAME,
        "max_length": 1024,
        "connect_timeout_s": 2.0,
        "replica_cooldown_s": 5.0,
        "connections": 8,
        "health_check_interval_s": 0.05,
        "health_check_timeout_s": 10.0,
        "discovery_interval_s": 0.05,
    }
    return VLLMOptions(**{**base, **overrides})


@pytest.fixture
def vllm_port(vllm_server: ServerProcess) -> int:
    port = urlsplit(vllm_server.url).port
    assert port is not None
    return port


async def test_a_dns_name_through_the_system_resolver_serves_reranking(
    start_sidecar: SidecarFactory,
    vllm_settings: Settings,
    vllm_port: int,
    http: aiohttp.ClientSession,
) -> None:
    url = await start_sidecar(vllm_settings, vllm_url=[f"dns+http://localhost:{vllm_port}"])
    body = {"query": "what is x?", "documents": ["x is a letter", "y"]}
    async with http.post(f"{url}/v1/rerank", json=body) as response:
        assert response.status == 200, await response.text()
        assert len((await response.json())["results"]) == 2


async def test_replicas_follow_the_answer_each_checked_on_its_own(vllm_port: int) -> None:
    answers = Answers("127.0.0.1")
    backend = VLLMBackend([f"dns+http://vllm.test:{vllm_port}"], options(), resolve=answers)
    up, other = f"http://127.0.0.1:{vllm_port}", f"http://127.0.0.2:{vllm_port}"
    await backend.start()
    try:
        assert backend.replica_urls == [up]
        assert backend.unavailable_reason() is None

        # A second pod appears: it is a replica of its own, and its refusal is its own problem.
        answers.addresses = ["127.0.0.2", "127.0.0.1"]
        await until(lambda: backend.replica_urls == [up, other], "the second replica")
        assert backend.unavailable_reason() is None
        for _ in range(4):  # the healthy pod gets every call
            assert len(await backend.score(["a", "b"], deadline=time.monotonic() + HANG)) == 2

        # The name stops resolving: the last answer is kept.
        answers.addresses = []
        asked = answers.asked
        await until(lambda: answers.asked > asked + 2, "resolution attempts")
        assert backend.replica_urls == [up, other]

        # Only the refusing pod is left: the backend is down, and says where it looked.
        answers.addresses = ["127.0.0.2"]
        await until(lambda: backend.replica_urls == [other], "the answer without the live pod")
        await asyncio.wait_for(backend.wait_unavailable(), HANG)
        reason = backend.unavailable_reason()
        assert reason is not None and other in reason
        with pytest.raises(BackendUnavailable):
            await backend.score(["a"], deadline=time.monotonic() + HANG)

        answers.addresses = ["127.0.0.1"]
        await until(lambda: backend.unavailable_reason() is None, "the live pod back")
    finally:
        await backend.close()


async def test_a_name_that_never_resolved_is_not_ready_until_it_does(vllm_port: int) -> None:
    answers = Answers()
    backend = VLLMBackend([f"dns+http://vllm.test:{vllm_port}"], options(), resolve=answers)
    await backend.start()
    try:
        assert backend.unavailable_reason() == (
            f"no vLLM replica found at dns+http://vllm.test:{vllm_port}"
        )
        with pytest.raises(BackendUnavailable, match="no vLLM replica found"):
            await backend.score(["a"], deadline=time.monotonic() + HANG)
        answers.addresses = ["127.0.0.1"]
        await until(lambda: backend.unavailable_reason() is None, "the first answer")
        assert len(await backend.score(["a"], deadline=time.monotonic() + HANG)) == 1
    finally:
        await backend.close()


@pytest.fixture
async def peer_ports() -> AsyncIterator[tuple[str, list[int], asyncio.Event]]:
    """A loopback HTTP server noting each request's client port; /slow waits for an event."""
    ports: list[int] = []
    release = asyncio.Event()

    async def fast(request: web.Request) -> web.Response:
        ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        return web.json_response({})

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return await fast(request)

    app = web.Application()
    app.router.add_get("/fast", fast)
    app.router.add_get("/slow", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")), ports, release
    finally:
        await server.close()


async def get(pool: PooledSessions, url: str) -> None:
    session = pool.take()
    try:
        async with session.get(url) as response:
            assert response.status == 200
    finally:
        pool.give_back(session)


async def test_kept_alive_connections_are_reused_without_a_maximum_age(
    peer_ports: tuple[str, list[int], asyncio.Event],
) -> None:
    url, ports, _ = peer_ports
    pool = PooledSessions(connections=4, max_age_s=0)
    try:
        for _ in range(3):
            await get(pool, f"{url}/fast")
    finally:
        await pool.close()
    assert len(set(ports)) == 1
    assert pool.replaced == 0


async def test_an_old_pool_is_replaced_and_closed_after_its_last_call(
    peer_ports: tuple[str, list[int], asyncio.Event],
) -> None:
    url, ports, release = peer_ports
    # Any age is too old: every call takes a new pool, so a new connection.
    pool = PooledSessions(connections=4, max_age_s=1e-9)
    try:
        first = pool.take()
        slow = asyncio.create_task(first.get(f"{url}/slow"))
        await get(pool, f"{url}/fast")
        await get(pool, f"{url}/fast")
        assert not first.closed  # its call is still running
        release.set()
        async with await slow as response:
            assert response.status == 200
        pool.give_back(first)
        await until(lambda: first.closed, "the replaced pool closed")
    finally:
        await pool.close()
    assert len(set(ports)) == 3
    assert pool.replaced >= 2
