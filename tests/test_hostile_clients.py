"""What a hostile or broken client can send, over real HTTP: always a JSON 4xx, never a 500, a
hang or a frozen event loop. Raw sockets where aiohttp's client would refuse to send the bytes."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from sidecar.config import Settings
from tests.conftest import SidecarFactory
from tests.test_http_errors import expect_error

# A guard against hangs, not a speed goal: every case here answers in well under a second.
HANG = 20


@pytest.fixture
def null_settings(tiny_model_dir: Path) -> Settings:
    return Settings(backend="null", model=str(tiny_model_dir))


async def raw_exchange(url: str, data: bytes, *, read_timeout: float = HANG) -> bytes:
    """Send bytes on a fresh connection; everything the server sends until it closes."""
    parsed = URL(url)
    reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            return await reader.read()
    finally:
        writer.close()


async def test_pathological_query_string_does_not_freeze_the_service(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    # 512 KB of `@` backtracked quadratically in the query-syntax regexes (minutes of CPU).
    url = await start_sidecar(null_settings)
    for text in ("@" * 512_000, " -(" * 100_000, ' -"' * 100_000, "a." * 200_000):
        body = {"query": {"query_string": {"query": text}}, "documents": ["a"]}
        async with asyncio.timeout(HANG), http.post(f"{url}/v1/rerank/query-dsl", json=body) as r:
            assert r.status in (200, 422), await r.text()


async def test_deeply_nested_documents_and_queries_are_not_500s(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    deep_list: object = "text"
    for _ in range(400):
        deep_list = [deep_list]
    deep_object: object = {"match": {"title": "shoes"}}
    for _ in range(900):
        deep_object = {"query": deep_object}
    deep_bool: object = {"match": {"title": "shoes"}}
    for _ in range(300):
        deep_bool = {"bool": {"must": [deep_bool]}}
    bodies = [
        {"query": {"match": {"title": "shoes"}}, "documents": [deep_list]},
        {"query": deep_object, "documents": ["a"]},
        {"query": deep_bool, "documents": ["a"]},
        {"query": "shoes", "documents": [{"a": deep_list}], "fields": ["a." * 2000 + "b"]},
    ]
    for body in bodies:
        async with http.post(f"{url}/v1/rerank/query-dsl", json=body) as r:
            assert r.status in (200, 422), await r.text()
            assert r.content_type == "application/json"


async def test_a_body_that_is_not_its_content_encoding_is_400_and_closes_the_connection(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings)
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with http.post(f"{url}/v1/rerank", data=b"not gzip at all", headers=headers) as r:
        await expect_error(r, 400, "bad_request", "gzip")
        assert r.headers["Connection"] == "close"
    # The next request is not hurt, and a real gzip body is read.
    body = gzip.compress(b'{"query": "q", "documents": ["a"]}')
    async with http.post(f"{url}/v1/rerank", data=body, headers=headers) as r:
        assert r.status == 200, await r.text()
    for encoding in ("br", "zstd"):
        headers = {"Content-Encoding": encoding}
        async with http.post(f"{url}/v1/rerank", data=b"{}", headers=headers) as r:
            error = await expect_error(r, 400, "bad_request", encoding)
            assert "install" not in str(error)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["bad-chunk-size", "oversized-header", "not-http"],
)
async def test_http_parser_errors_are_json(
    start_sidecar: SidecarFactory, null_settings: Settings, request_bytes: bytes
) -> None:
    url = await start_sidecar(null_settings)
    answer = await raw_exchange(url, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"400", b"431"), answer[:300]
    assert b"Content-Type: application/json" in head
    assert body.startswith(b'{"error":{"type":"bad_request"')


async def test_slow_headers_and_stalled_bodies_are_cut_off(
    start_sidecar: SidecarFactory, null_settings: Settings
) -> None:
    url = await start_sidecar(null_settings, header_timeout_s=1, body_timeout_s=1)
    # Half a request head, then nothing: the server closes the connection.
    assert await raw_exchange(url, b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n") == b""
    # A whole head announcing 100 bytes, 10 sent: 408, JSON, connection closed.
    stalled = b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{" + b" " * 9
    answer = await raw_exchange(url, stalled)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"type":"request_timeout"' in answer
    assert b"Connection: close" in answer


async def test_bearer_scheme_is_case_insensitive_and_unknown_paths_are_404_with_a_token(
    start_sidecar: SidecarFactory, null_settings: Settings, http: aiohttp.ClientSession
) -> None:
    url = await start_sidecar(null_settings, api_token="s3cret")
    body = {"query": "q", "documents": ["a"]}
    for scheme in ("Bearer", "bearer", "BEARER"):
        headers = {"Authorization": f"{scheme} s3cret"}
        async with http.post(f"{url}/v1/rerank", json=body, headers=headers) as r:
            assert r.status == 200, scheme
    async with http.post(
        f"{url}/v1/rerank", json=body, headers={"Authorization": "Basic s3cret"}
    ) as r:
        await expect_error(r, 401, "unauthorized")
    async with http.get(f"{url}/v1/nothing") as r:
        await expect_error(r, 404, "not_found")
    async with http.get(f"{url}/v1/rerank", headers={"Authorization": "Bearer s3cret"}) as r:
        await expect_error(r, 405, "method_not_allowed")
